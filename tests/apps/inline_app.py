"""For tests/test_inline.py: which thread runs the app, and big responses.

/thread      the app thread's kind: "main" (the worker's I/O thread) or "other";
             ?spin_ms=N first computes for N ms, the GIL held (like a small view)
/stats       how many /thread calls ran on each kind since the last /stats, as JSON
/sleep       ?s=SECONDS, then the thread kind
/big         ?mib=N (at most 64): N MiB from a generator, records close:big
/write       ?mib=N: N MiB through write(), records close:write
/pipe        writes to a pipe whose reader is gone: "epipe" if that raised BrokenPipeError
/ticks       starts (once) a Python thread that counts every 5 ms; the count so far
/unread      ?port=P: bytes clients sent to the worker's connections on port P that it
             has not read yet, then the thread kind: "123 main"
Bodies are a repeating 0..255 byte pattern, so a client can check every byte.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import termios
import threading
import time
from urllib.parse import parse_qs

from _events import record
from _sockets import connection_fds

PATTERN = bytes(range(256)) * 256  # 64 KiB
_counts = {"main": 0, "other": 0}
_counts_lock = threading.Lock()


_ticks = [0]
_ticker: list[threading.Thread] = []


def _tick() -> None:
    while True:
        time.sleep(0.005)
        _ticks[0] += 1


def thread_kind() -> bytes:
    return b"main" if threading.current_thread() is threading.main_thread() else b"other"


class Big:
    def __init__(self, chunks: int, tag: str):
        self.chunks, self.tag = chunks, tag

    def __iter__(self):
        for _ in range(self.chunks):
            yield PATTERN

    def close(self):
        record(f"close:{self.tag}")


def unread_bytes(port: int) -> int:
    """What clients sent to this worker's connections on `port` that it has not read
    yet: the receive queues of its sockets (cheap enough for a short call)."""
    total = 0
    for fd in connection_fds(port):
        try:
            queued = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            continue
        total += struct.unpack("i", queued)[0]
    return total


def application(environ, start_response):
    path = environ["PATH_INFO"]
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/ticks":
        if not _ticker:
            _ticker.append(threading.Thread(target=_tick, daemon=True))
            _ticker[0].start()
        body = str(_ticks[0]).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/stats":
        with _counts_lock:
            body = json.dumps(_counts).encode()
            _counts.update(main=0, other=0)
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/thread":
        until = time.perf_counter() + float(qs.get("spin_ms", "0")) / 1000
        while time.perf_counter() < until:
            pass
        with _counts_lock:
            _counts[thread_kind().decode()] += 1
    if path in ("/thread", "/sleep"):
        if path == "/sleep":
            time.sleep(min(float(qs.get("s", "0.1")), 5.0))
        body = thread_kind()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/unread":
        body = b"%d %s" % (unread_bytes(int(qs["port"])), thread_kind())
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/pipe":
        r, w = os.pipe()
        os.close(r)
        try:
            os.write(w, b"x")
            body = b"written"
        except BrokenPipeError:
            body = b"epipe"
        finally:
            os.close(w)
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]
    mib = min(int(qs.get("mib", "1")), 64)
    chunks = mib * 16
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Big(chunks, "big")
    if path == "/write":
        write = start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(chunks * len(PATTERN))),
            ],
        )
        try:
            for _ in range(chunks):
                write(PATTERN)
        finally:
            record("close:write")
        return []
    start_response("404 Not Found", [("Content-Length", "0")])
    return []
