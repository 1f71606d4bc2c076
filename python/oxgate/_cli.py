"""The `oxgate` console script: hands argv to the Rust core."""

from __future__ import annotations

import signal
import sys


def main(argv: list[str] | None = None) -> None:
    from oxgate import _oxgate

    # The Rust core handles INT/TERM/QUIT itself; Python's own SIGINT handler
    # would otherwise raise KeyboardInterrupt once the core returns, turning a
    # clean stop into a death by signal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    args = sys.argv[1:] if argv is None else argv
    sys.exit(_oxgate.run(args))
