"""For tests/test_hold.py: an app thread's responses wait while requests queue for it.

/sent    ?port=P: the call's number (counted per path, from 1), then the data
         segments the worker's connections on port P have sent so far (TCP_INFO): "3 12"
/nth     ?release=PATH: the call's number; calls 2 and 3 first compute, the GIL
         held, until PATH exists (30 s at most)
/pair    ?release=PATH: the call's number; call 1 first waits for call 2 to run (and
         50 ms more), and its response's close() waits until PATH exists (30 s at most)
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
import time
from urllib.parse import parse_qs

from _sockets import connection_fds, view

_calls: dict[str, itertools.count] = {}
_second_ran = threading.Event()
_calls_lock = threading.Lock()
# struct tcp_info's tcpi_data_segs_out (Linux 4.6 and later).
_DATA_SEGS_OUT = 156


_conns: dict[int, list[int]] = {}


def segments_sent(port: int) -> int:
    """Data segments sent so far on the connections on `port` there were at the first
    look (found once: a call stays short, well under a millisecond)."""
    if port not in _conns:
        _conns[port] = connection_fds(port)
    total = 0
    for fd in _conns[port]:
        with view(fd) as sock:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        total += struct.unpack_from("I", info, _DATA_SEGS_OUT)[0]
    return total


def wait_for(path: str) -> None:
    until = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < until:
        time.sleep(0.001)


class ClosedLate(list):
    """A response whose close() waits for a file: the response has ended by then."""

    def __init__(self, body: bytes, release: str):
        super().__init__([body])
        self.release = release

    def close(self) -> None:
        wait_for(self.release)


def application(environ, start_response):
    qs = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    with _calls_lock:
        n = next(_calls.setdefault(environ["PATH_INFO"], itertools.count(1)))
    body = str(n)
    if environ["PATH_INFO"] == "/sent":
        body += f" {segments_sent(int(qs['port']))}"
    elif environ["PATH_INFO"] == "/nth" and n in (2, 3):
        until = time.monotonic() + 30
        while not os.path.exists(qs["release"]) and time.monotonic() < until:
            pass
    elif environ["PATH_INFO"] == "/pair" and n == 2:
        _second_ran.set()
    elif environ["PATH_INFO"] == "/pair" and n == 1:
        _second_ran.wait(30)
        time.sleep(0.05)  # call 2's thread runs out of requests meanwhile
    data = body.encode()
    start_response("200 OK", [("Content-Length", str(len(data)))])
    if environ["PATH_INFO"] == "/pair" and n == 1:
        return ClosedLate(data, qs["release"])
    return [data]
