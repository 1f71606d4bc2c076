"""The Python ceiling: call one bench app in a loop for N seconds with a prepared
environ, no server and no socket, and print calls/s and µs per call as JSON.
bench/compare.py runs it pinned to CPU 0, like the servers. Timed after a warm-up (up
to a second) with the loaded app frozen out of the garbage collector, as the best a
server can do for its app.

    python bench/ceiling.py benchapps:hello / SECONDS
"""

from __future__ import annotations

import gc
import importlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))


def environ(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "ceiling",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def main() -> None:
    target, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    module, _, name = target.partition(":")
    app = getattr(importlib.import_module(module), name)
    base = environ(path)
    status: list[str] = []

    def start_response(s: str, headers: list, exc_info: Any = None) -> None:
        status[:] = [s]

    def call() -> None:
        env = dict(base)
        env["wsgi.input"] = io.BytesIO()
        body = app(env, start_response)
        for _chunk in body:
            pass
        if hasattr(body, "close"):
            body.close()

    # Out of the timing: the first calls (Django imports the project's URLconf on the
    # first one), and the garbage collector's walks over the loaded app, which a
    # server can spare its app as oxgate does (gc.freeze() once the app is loaded).
    warm_until = time.perf_counter() + min(1.0, seconds / 10)
    while time.perf_counter() < warm_until:
        call()
    gc.collect()
    gc.freeze()
    status.clear()

    calls = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(100):  # the clock read stays out of the per-call cost
            call()
        calls += 100
        if (now := time.perf_counter()) >= end:
            break
    elapsed = now - t0
    if not status or not status[0].startswith("200"):
        raise SystemExit(f"{target} {path}: {status[0] if status else 'no start_response'}")
    print(
        json.dumps(
            {
                "calls": calls,
                "seconds": elapsed,
                "calls_per_s": calls / elapsed,
                "us_per_call": elapsed / calls * 1e6,
            }
        )
    )


if __name__ == "__main__":
    main()
