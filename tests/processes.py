"""Test support for multi-process tests: the workers a master logged, /proc inspection
of the master and its workers, a keep-alive client that retries only what any HTTP
client retries, and a pool of such clients looping requests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support import (
    IO_TIMEOUT,
    IncompleteResponse,
    OxgateProcess,
    RawConnection,
    RawResponse,
    simple_request,
    wait_until,
)

BOOTING_RE = re.compile(r"Booting worker with pid: (\d+)")
READY_RE = re.compile(r"Worker ready \(pid: (\d+)\)")


def booted(server: OxgateProcess) -> list[int]:
    """Pids of the `Booting worker` lines, in log order, without repeats."""
    return list(dict.fromkeys(int(p) for p in BOOTING_RE.findall(server.stderr_text())))


def ready(server: OxgateProcess) -> list[int]:
    """Pids of the `Worker ready` lines, in log order, without repeats."""
    return list(dict.fromkeys(int(p) for p in READY_RE.findall(server.stderr_text())))


def poll(predicate, timeout: float, what, log=None):
    """wait_until, failing with `what()` and the log of `log` (a server, or a callable)."""
    text = log.stderr_text if isinstance(log, OxgateProcess) else log
    return wait_until(predicate, timeout, what, text)


def wait_ready(server: OxgateProcess, n: int, exclude=(), timeout: float = 15.0) -> list[int]:
    """Wait until `n` workers not in `exclude` logged `Worker ready`; their pids."""
    exclude = set(exclude)

    def fresh():
        pids = [p for p in ready(server) if p not in exclude]
        return pids if len(pids) >= n else None

    return poll(fresh, timeout, lambda: f"{n} 'Worker ready' line(s) beyond {exclude}", server)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, or None if there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def exists(pid: int) -> bool:
    """True while there is a process `pid`, a zombie included (kill(pid, 0))."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stopped(pid: int) -> bool:
    """True once every thread of `pid` is stopped (SIGSTOP: state T)."""
    tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    return all((st := _stat(tid)) is not None and st[0] == "T" for tid in tids)


@contextmanager
def held_still(pid: int) -> Iterator[None]:
    """`pid` stopped (SIGSTOP) for the block, so all that clients send meanwhile is
    there at once when it goes on."""
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: stopped(pid), 5, lambda: f"process {pid} to stop")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


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


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    """How many file descriptors `pid` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


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

    `retry=False` turns that retry off: then every request a dying server had taken is
    a failure. `per_connection` makes it reconnect after that many requests.
    `opened` is when (time.monotonic()) the last request's connection was opened.
    """

    def __init__(self, port: int, retry: bool = True, per_connection: int | None = None):
        self.port = port
        self.retry = retry
        self.per_connection = per_connection
        self.conn: _CountingConnection | None = None
        self.used = 0
        self.retries = 0
        self.opened = 0.0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def get(self, path: str) -> RawResponse:
        if self.per_connection is not None and self.used >= self.per_connection:
            self.close()
        for attempt in (0, 1):
            if self.conn is None:
                self.opened = time.monotonic()
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
                if self.retry and reused and got == 0 and attempt == 0:
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


class ClientLoop:
    """`clients` threads, each GETting `path` over keep-alive until stopped (or `per_client`).

    `retry` and `per_connection` are KeepAliveClient's. For each failure, `failed_at`
    holds (when its connection was opened, when it failed), in time.monotonic().
    """

    def __init__(
        self,
        port: int,
        path: str,
        clients: int = 4,
        per_client: int | None = None,
        retry: bool = True,
        per_connection: int | None = None,
    ):
        self.port = port
        self.path = path
        self.per_client = per_client
        self.retry = retry
        self.per_connection = per_connection
        self.responses: list[RawResponse] = []
        self.failures: list[str] = []
        self.failed_at: list[tuple[float, float]] = []
        self.retries = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def start(self) -> ClientLoop:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.join(timeout)

    def join(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        assert not any(t.is_alive() for t in self._threads), "client loop did not finish"

    def count(self) -> int:
        with self._lock:
            return len(self.responses)

    def pids(self) -> list[int]:
        """The "pid" of every JSON answer so far (apps that say which worker answered)."""
        with self._lock:
            return [r.json()["pid"] for r in self.responses]

    def _run(self) -> None:
        client = KeepAliveClient(self.port, self.retry, self.per_connection)
        done = 0
        deadline = time.monotonic() + 60
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self.per_client is not None and done >= self.per_client:
                    break
                done += 1
                try:
                    resp = client.get(self.path)
                except Exception as e:  # every failure is recorded and asserted on
                    with self._lock:
                        self.failures.append(f"{time.strftime('%X')} {e!r}")
                        self.failed_at.append((client.opened, time.monotonic()))
                    continue
                with self._lock:
                    if resp.status == 200:
                        self.responses.append(resp)
                    else:
                        self.failures.append(f"status {resp.status}: {resp!r}")
                        self.failed_at.append((client.opened, time.monotonic()))
        finally:
            client.close()
            with self._lock:
                self.retries += client.retries


def reap(server: OxgateProcess, workers: list[int] | None = None) -> None:
    """Stop a master, then SIGKILL any of its workers (by default: those its stderr
    says it booted) that outlived it."""
    if server.proc is None:
        return
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)
    for pid in booted(server) if workers is None else workers:
        if alive(pid) and _is_oxgate(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    server.stop()
