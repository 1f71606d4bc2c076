"""Slow and concurrent requests: /sleep?s=SECONDS, /barrier (two requests must meet)."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs

from _events import record

_barrier = threading.Barrier(2, timeout=10)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    record(f"started:{path}")
    if path == "/sleep":
        time.sleep(min(float(qs.get("s", "1")), 10.0))
        body = b"slept"
    elif path == "/barrier":
        try:
            _barrier.wait()
            body = b"passed"
        except threading.BrokenBarrierError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"barrier broken: requests were not served concurrently"]
    else:
        body = b"fast"
    record(f"finished:{path}")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
