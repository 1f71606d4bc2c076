"""Starts the peers that have no command line of their own (bjoern, fastwsgi,
meinheld) on 127.0.0.1:PORT with MODULE:CALLABLE. Used by bench/peers.py only.

    python bench/launch.py SERVER MODULE:CALLABLE PORT [WORKERS]
"""

from __future__ import annotations

import importlib
import sys


def main() -> None:
    server, target, port_s = sys.argv[1:4]
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    module, _, name = target.partition(":")
    app = getattr(importlib.import_module(module), name or "application")
    port = int(port_s)
    if server == "bjoern":
        import bjoern

        bjoern.run(app, "127.0.0.1", port)
    elif server == "fastwsgi":
        import fastwsgi

        fastwsgi.run(app, host="127.0.0.1", port=port, workers=workers)
    elif server == "meinheld":
        from meinheld import server as meinheld

        meinheld.listen(("127.0.0.1", port))
        meinheld.run(app)
    else:
        raise SystemExit(f"unknown server {server}")


if __name__ == "__main__":
    main()
