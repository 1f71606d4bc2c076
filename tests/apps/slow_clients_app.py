"""For slow-client and overload tests.

/            b"ok"
/stream      ?chunks=N&size=BYTES: a generator of N chunks, close() recorded as close:stream
/big         ?size=BYTES: one bytes object of that size, in a list
/upload      reads wsgi.input to the end; answers its length, records upload:LENGTH
/sleep       ?s=SECONDS (at most 10), records started:sleep and finished:sleep
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from _events import record


class Chunks:
    def __init__(self, count: int, size: int):
        self.count = count
        self.chunk = b"x" * size

    def __iter__(self):
        for _ in range(self.count):
            yield self.chunk

    def close(self):
        record("close:stream")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Chunks(int(qs.get("chunks", "1")), int(qs.get("size", "65536")))
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [b"x" * int(qs.get("size", "65536"))]
    if path == "/upload":
        body = environ["wsgi.input"].read()
        record(f"upload:{len(body)}")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(body)).encode()]
    if path == "/sleep":
        record("started:sleep")
        time.sleep(min(float(qs.get("s", "1")), 10.0))
        record("finished:sleep")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
