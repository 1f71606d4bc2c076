"""For the --threads N pool: which thread ran a request (/thread, and ?i=N back), a call
that computes (/spin?ms=N) and one blocked with the GIL released (/barrier: four
requests must meet)."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs

from _events import record

_barrier = threading.Barrier(4, timeout=10)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    status = "200 OK"
    if path == "/spin":
        record("started:/spin")
        until = time.monotonic() + float(qs.get("ms", "100")) / 1000
        n = 0
        while time.monotonic() < until:
            n += 1
    elif path == "/barrier":
        try:
            _barrier.wait()
        except threading.BrokenBarrierError:
            status = "500 Internal Server Error"
    start_response(status, [("Content-Type", "text/plain")])
    name = threading.current_thread().name
    return [f"{name} {qs['i']}".encode() if "i" in qs else name.encode()]
