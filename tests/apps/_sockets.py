"""Shared by the test apps: the worker's own connections, seen from inside a call."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def view(fd: int) -> Iterator[socket.socket]:
    """A socket object for the server's descriptor `fd`: detached, never closed, here."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fd)
    try:
        yield sock
    finally:
        sock.detach()


def connection_fds(port: int) -> list[int]:
    """The descriptors of this worker's connections on local `port` (not the listener)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            # Checked first: a socket object made of a non-socket leaks its dup.
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            with view(fd) as sock:
                here = sock.getsockname()
                if not isinstance(here, tuple) or here[1] != port:
                    continue
                sock.getpeername()  # a connection, not the listener
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor), or not connected
        found.append(fd)
    return found
