"""Test support for multi-process tests: /proc inspection of the master and its
workers, and a keep-alive client that retries only what any HTTP client retries."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from support import (
    IO_TIMEOUT,
    IncompleteResponse,
    RawConnection,
    RawResponse,
    simple_request,
)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, or None if there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent counts as gone)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def parent_of(pid: int) -> int | None:
    st = _stat(pid)
    return st[1] if st else None


def live_children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[1] == pid and st[0] not in ("Z", "X"):
                kids.append(int(entry))
    return sorted(kids)


def _is_oxgate(pid: int) -> bool:
    try:
        return b"oxgate" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class _CountingConnection(RawConnection):
    """A RawConnection that counts the bytes it received."""

    received = 0

    def _fill(self) -> bool:
        before = len(self.buf)
        more = super()._fill()
        self.received += len(self.buf) - before
        return more


class KeepAliveClient:
    """GETs over one keep-alive connection, reconnecting as an HTTP client does.

    If a *reused* connection is closed by the server before a single byte of the
    response arrived (the server closed it between requests), the request is retried
    once on a new connection -- like httpx/urllib3/browsers do. Anything else (refused
    connection, reset on a fresh connection, cut response, timeout) is raised.
    """

    def __init__(self, port: int):
        self.port = port
        self.conn: _CountingConnection | None = None
        self.used = 0
        self.retries = 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def get(self, path: str) -> RawResponse:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = _CountingConnection(("127.0.0.1", self.port), IO_TIMEOUT)
                self.used = 0
            reused = self.used > 0
            before = self.conn.received
            try:
                self.conn.send(simple_request(target=path))
                resp = self.conn.read_response()
            except socket.timeout:
                self.close()
                raise
            except (IncompleteResponse, ConnectionError) as e:
                got = self.conn.received - before
                self.close()
                if reused and got == 0 and attempt == 0:
                    self.retries += 1
                    continue
                which = f"request {self.used + 1} on a {'reused' if reused else 'new'} connection"
                raise ConnectionError(
                    f"{e!r} on {which}, after {got} response bytes (attempt {attempt + 1})"
                ) from e
            self.used += 1
            if (resp.header("Connection") or "").lower() == "close":
                self.close()
            return resp
        raise AssertionError("unreachable")
