"""Test support: run a real oxgate process, and speak raw HTTP/1.x to it.

Everything here is bounded: every wait has a deadline, every socket a timeout,
and every process is stopped (SIGTERM, then SIGKILL) by whoever started it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

TESTS_DIR = Path(__file__).resolve().parent
APPS_DIR = TESTS_DIR / "apps"
REPO_DIR = TESTS_DIR.parent
EXAMPLES_DIR = REPO_DIR / "examples"

READY_TIMEOUT = 20.0
IO_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

LISTENING_RE = re.compile(r"Listening at: (?P<url>\S+) \((?P<pid>\d+)\)")
ERROR_LOG_LINE_RE = re.compile(
    r"^\[(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    r"\[(?P<pid>\d+)\] \[(?P<level>[A-Z]+)\] (?P<msg>.*)$"
)

# Variables that change how oxgate starts; tests set them explicitly when they want them.
_SCRUBBED_ENV = ("OXGATE_CMD_ARGS", "GUNICORN_CMD_ARGS", "PORT", "SCRIPT_NAME", "WEB_CONCURRENCY")


def base_env(extra: dict[str, str] | None = None, pythonpath: bool = True) -> dict[str, str]:
    """The environment for an oxgate child: the test apps importable, nothing surprising."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = str(APPS_DIR)
    else:
        env.pop("PYTHONPATH", None)
    if extra:
        env.update(extra)
    return env


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str | Callable[[], str],
    log: Callable[[], str] | None = None,
) -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds,
    saying `what` (or `what()`) was awaited, and `log()` if given."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            awaited = what() if callable(what) else what
            extra = f"\n--- log ---\n{log()}" if log is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {awaited}{extra}")
        time.sleep(0.02)


class _Pump(threading.Thread):
    """Reads one pipe of the child into memory, line by line, as it arrives."""

    def __init__(self, stream, cond: threading.Condition):
        super().__init__(daemon=True)
        self._stream = stream
        self._cond = cond
        self.chunks: list[bytes] = []
        self.eof = False

    def run(self) -> None:
        try:
            for line in iter(self._stream.readline, b""):
                with self._cond:
                    self.chunks.append(line)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.eof = True
                self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return b"".join(self.chunks).decode("utf-8", "replace")


class OxgateProcess:
    """One running `python -m oxgate ...`, with its output captured.

    `ready` decides how start() knows the server listens: "stderr" (the default)
    waits for the `Listening at:` line on stderr; a Path waits for that line in a
    file (for --error-logfile); None waits for nothing (the process may just exit).
    `stdin`: the child's standard input, a descriptor (default: /dev/null).
    """

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        ready: object = "stderr",
        stdin: int = subprocess.DEVNULL,
    ):
        self.args = [sys.executable, "-m", "oxgate", *args]
        self.stdin = stdin
        self.env = env if env is not None else base_env()
        self.cwd = str(cwd) if cwd is not None else str(APPS_DIR)
        self.ready = ready
        # wait for one `Listening at:` line per --bind given on the command line
        self.expected_listeners = max(
            1, sum(1 for a in args if a in ("-b", "--bind") or a.startswith("--bind="))
        )
        self.proc: subprocess.Popen | None = None
        self._cond = threading.Condition()
        self._out: _Pump | None = None
        self._err: _Pump | None = None
        self.listening: list[str] = []
        self.port: int | None = None

    # -- life cycle ---------------------------------------------------------------------

    def start(self, timeout: float = READY_TIMEOUT) -> OxgateProcess:
        self.proc = subprocess.Popen(
            self.args,
            stdin=self.stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
        )
        self._out = _Pump(self.proc.stdout, self._cond)
        self._err = _Pump(self.proc.stderr, self._cond)
        self._out.start()
        self._err.start()
        if self.ready == "stderr":
            self._wait_listening(self.stderr_text, timeout)
        elif isinstance(self.ready, Path):
            path = self.ready
            self._wait_listening(
                lambda: path.read_text("utf-8", "replace") if path.exists() else "", timeout
            )
        return self

    def _wait_listening(self, source: Callable[[], str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = LISTENING_RE.findall(source())
                if len(found) >= self.expected_listeners:
                    break
                if self.proc.poll() is not None and self._err.eof and self._out.eof:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.1))
        if len(found) < self.expected_listeners:
            code = self.proc.poll()
            state = f"exited with {code}" if code is not None else "still running"
            self.kill()
            raise AssertionError(
                f"oxgate did not report 'Listening at:' within {timeout}s ({state})\n"
                f"command: {self.args}\n--- stderr ---\n{self.stderr_text()}\n"
                f"--- stdout ---\n{self.stdout_text()}"
            )
        self.listening = [url for url, _pid in found]
        for url in self.listening:
            m = re.match(r"^https?://(?:\[[^\]]*\]|[^:/]+):(\d+)$", url)
            if m:
                self.port = int(m.group(1))
                break

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig`, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._join_pumps()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._join_pumps()

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"oxgate did not exit within {timeout}s\n--- stderr ---\n{self.stderr_text()}"
            ) from None
        self._join_pumps()
        return self.proc.returncode

    def _join_pumps(self) -> None:
        for pump in (self._out, self._err):
            if pump is not None:
                pump.join(5)

    # -- what it said -------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr_text(self) -> str:
        return self._err.text() if self._err else ""

    def stdout_text(self) -> str:
        return self._out.text() if self._out else ""

    def wait_for_stderr(self, pattern: str, timeout: float = IO_TIMEOUT) -> re.Match:
        return self._wait_for(self.stderr_text, pattern, timeout, "stderr")

    def wait_for_stdout(self, pattern: str, timeout: float = IO_TIMEOUT) -> re.Match:
        return self._wait_for(self.stdout_text, pattern, timeout, "stdout")

    def _wait_for(self, source, pattern: str, timeout: float, name: str) -> re.Match:
        rx = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = rx.search(source())
                if m:
                    return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{pattern!r} did not appear on {name} within {timeout}s\n"
                        f"--- stderr ---\n{self.stderr_text()}\n--- stdout ---\n"
                        f"{self.stdout_text()}"
                    )
                self._cond.wait(min(remaining, 0.1))

    # -- HTTP -----------------------------------------------------------------------------

    def connect(self, timeout: float = IO_TIMEOUT) -> RawConnection:
        return RawConnection(("127.0.0.1", self.port), timeout)

    def get_json(self, path: str) -> object:
        """GET `path` on a fresh connection and decode the JSON body."""
        with self.connect() as conn:
            conn.send(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            resp = conn.read_response()
        assert resp.status == 200, resp
        return json.loads(resp.body)


def run_oxgate(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess:
    """Run oxgate to completion (for commands that exit: errors, --version, ...)."""
    return subprocess.run(
        [sys.executable, "-m", "oxgate", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env if env is not None else base_env(),
        cwd=str(cwd) if cwd is not None else str(APPS_DIR),
        timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    """The `Error: ...` lines of a start-up failure."""
    return [line for line in stderr.splitlines() if line.startswith("Error: ")]


# ---------------------------------------------------------------------------------------
# Raw HTTP/1.x client
# ---------------------------------------------------------------------------------------


class IncompleteResponse(AssertionError):
    """The peer closed before the response was complete."""

    def __init__(self, message: str, partial: bytes):
        super().__init__(message)
        self.partial = partial


class RawResponse:
    def __init__(self, version: str, status: int, reason: str, headers: list[tuple[str, str]]):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = b""
        self.chunked = False
        self.trailers: list[tuple[str, str]] = []
        self.raw_head = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def has_header(self, name: str) -> bool:
        return any(k.lower() == name.lower() for k, _ in self.headers)

    def json(self) -> object:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return (
            f"<RawResponse {self.version} {self.status} {self.reason} headers={self.headers} "
            f"body={self.body[:300]!r}>"
        )


class RawConnection:
    """A plain socket with a read buffer; parses responses exactly as they arrive."""

    # What a read may raise when the peer is gone: counted as EOF.
    CLOSED_ERRORS: tuple[type[BaseException], ...] = (ConnectionResetError,)

    def __init__(self, address, timeout: float = IO_TIMEOUT, family: int = socket.AF_INET):
        if family == socket.AF_UNIX:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(address)
        else:
            self.sock = socket.create_connection(address, timeout=timeout)
        self.buf = b""
        self.eof = False

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0), as a client that vanishes does."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
        except OSError:
            pass
        self.close()

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        """Read more bytes into the buffer; False at EOF (or reset)."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except self.CLOSED_ERRORS:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                partial, self.buf = self.buf, b""
                raise IncompleteResponse(f"EOF after {len(partial)} of {n} bytes", partial)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_line(self, limit: int = 1 << 20) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError("line too long")
            if not self._fill():
                partial, self.buf = self.buf, b""
                raise IncompleteResponse("EOF inside a line", partial)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_until_close(self) -> bytes:
        """Everything until the peer closes (fails on timeout: the peer did not close)."""
        while self._fill():
            if len(self.buf) > 64 << 20:
                raise AssertionError("more than 64 MiB without EOF")
        data, self.buf = self.buf, b""
        return data

    def wait_closed(self, timeout: float = IO_TIMEOUT) -> bytes:
        """Wait until the peer closes; returns any bytes that came first."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            return self.read_until_close()
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s") from None
        finally:
            self.sock.settimeout(old)

    def is_closed_by_peer(self, timeout: float = 1.0) -> bool:
        """True if the peer closes (EOF) within `timeout` with nothing else sent."""
        if self.buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            return not self._fill()
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(old)

    def read_head(self) -> RawResponse:
        raw = b""
        line = self.read_line()
        raw += line + b"\r\n"
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", line)
        assert m, f"bad status line {line!r}"
        headers = []
        while True:
            line = self.read_line()
            raw += line + b"\r\n"
            if line == b"":
                break
            name, sep, value = line.partition(b":")
            assert sep, f"bad header line {line!r}"
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        resp = RawResponse(
            m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1"), headers
        )
        resp.raw_head = raw
        return resp

    def read_response(self, method: str = "GET", allow_informational: bool = False) -> RawResponse:
        """Read one response; 1xx ones are skipped unless `allow_informational`."""
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200 and resp.status != 101:
                if allow_informational:
                    return resp
                continue
            break
        if method == "HEAD" or resp.status in (204, 304):
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        if te:
            assert te.endswith("chunked"), resp
            resp.chunked = True
            resp.body = self._read_chunked(resp)
        elif resp.has_header("Content-Length"):
            n = int(resp.header("Content-Length"))
            try:
                resp.body = self.read_exact(n)
            except IncompleteResponse as e:
                resp.body = e.partial
                raise IncompleteResponse(f"body cut: {e}; {resp!r}", e.partial) from None
        else:
            resp.body = self.read_until_close()
        return resp

    def _read_chunked(self, resp: RawResponse) -> bytes:
        body = b""
        while True:
            try:
                size_line = self.read_line()
            except IncompleteResponse as e:
                raise IncompleteResponse("chunked body cut before a chunk", body) from e
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            try:
                body += self.read_exact(size)
                assert self.read_exact(2) == b"\r\n", "chunk not followed by CRLF"
            except IncompleteResponse as e:
                raise IncompleteResponse(
                    "chunked body cut inside a chunk", body + e.partial
                ) from None
        while True:
            line = self.read_line()
            if line == b"":
                break
            name, _, value = line.partition(b":")
            resp.trailers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        return body

    def request(self, data: bytes, method: str = "GET") -> RawResponse:
        self.send(data)
        return self.read_response(method)


def simple_request(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: str | None = "test",
) -> bytes:
    """Build request bytes; adds Host and (for a body) Content-Length unless given."""
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if host is not None and "host" not in names:
        headers.insert(0, ("Host", host))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


def app_calls(server: OxgateProcess) -> int:
    """How many requests tests/apps/counter.py has served (the query itself not counted)."""
    return server.get_json("/__calls__")["calls"]


def read_events(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines() if path.exists() else []


def wait_event(path: Path, event: str, timeout: float = IO_TIMEOUT) -> list[str]:
    """Wait until the app recorded `event` (a whole line) in the events file."""
    return wait_until(
        lambda: event in read_events(path) and read_events(path),
        timeout,
        f"event {event!r} in {path} (have {read_events(path)})",
    )


def manage(site: Path, *args: str) -> None:
    """Run the Django example's manage.py in `site` (a copy of examples/django_site)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=site,
        env=base_env(pythonpath=False),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
