"""The `oxgate` console script: hands argv to the Rust core."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from oxgate import _oxgate

    args = sys.argv[1:] if argv is None else argv
    sys.exit(_oxgate.run(args))
