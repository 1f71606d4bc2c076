"""The shipped deployment examples, run for real: nginx (Debian's binary) in front of
oxgate over unix sockets, with examples/deploy/nginx/oxgate.conf as the site.

The site file is used as shipped; only its socket paths and listen address are
rewritten (and its commented second upstream server switched on where a test needs
two instances). nginx runs in the foreground with every path in the test's tmp dir.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import termios
from pathlib import Path

import pytest
from processes import ClientLoop, wait_ready
from support import (
    EXAMPLES_DIR,
    IO_TIMEOUT,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    OxgateProcess,
    RawConnection,
    RawResponse,
    simple_request,
    wait_until,
)

SITE = EXAMPLES_DIR / "deploy" / "nginx" / "oxgate.conf"
SHIPPED_SOCKET = "server unix:/run/oxgate/oxgate.sock"
SHIPPED_SECOND_SOCKET = "#server unix:/run/oxgate/oxgate-2.sock"


def _find_nginx() -> str | None:
    # Debian puts it in /usr/sbin, which is not on a non-root user's PATH.
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


NGINX = _find_nginx()

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx)"
)


# --- nginx -------------------------------------------------------------------------------


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{SITE} no longer has exactly one {old!r}"
    return text.replace(old, new)


def render_site(sockets: list[Path], port: int) -> str:
    """The shipped site with our sockets and a loopback listen address."""
    text = SITE.read_text("utf-8")
    text = _replace_once(text, SHIPPED_SOCKET, f"server unix:{sockets[0]}")
    if len(sockets) == 2:
        text = _replace_once(text, SHIPPED_SECOND_SOCKET, f"server unix:{sockets[1]}")
    text = _replace_once(text, "listen 80;", f"listen 127.0.0.1:{port};")
    text = _replace_once(text, "listen [::]:80;\n", "")
    active = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any("/run/oxgate" in line for line in active), "a shipped path was left"
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx in the foreground (`daemon off;`) with its own prefix, logs and temp dirs."""

    def __init__(self, root: Path, sockets: list[Path]):
        self.root = root
        self.sockets = sockets
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.error_log = root / "error.log"
        self.access_log = root / "access.log"

    def _write_config(self, port: int) -> Path:
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.root / name).mkdir(exist_ok=True)
        (self.root / "site.conf").write_text(render_site(self.sockets, port), "utf-8")
        r = self.root
        # As root, nginx's workers would switch to `nobody`; the test's files are root's.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = r / "nginx.conf"
        conf.write_text(
            f"{user}daemon off;\n"
            "worker_processes 1;\n"
            f"pid {r}/nginx.pid;\n"
            f"error_log {self.error_log} info;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            f"    access_log {self.access_log};\n"
            f"    client_body_temp_path {r}/client_body;\n"
            f"    proxy_temp_path {r}/proxy;\n"
            f"    fastcgi_temp_path {r}/fastcgi;\n"
            f"    uwsgi_temp_path {r}/uwsgi;\n"
            f"    scgi_temp_path {r}/scgi;\n"
            f"    include {r}/site.conf;\n"
            "}\n",
            "utf-8",
        )
        return conf

    def _argv(self, conf: Path, *extra: str) -> list[str]:
        # -e: the error log from the very start (the built-in one is /var/log/nginx's)
        return [NGINX, "-p", f"{self.root}/", "-c", str(conf), "-e", str(self.error_log), *extra]

    def start(self) -> Nginx:
        # nginx cannot report a port it picked: take a free one, and another if it was
        # taken in between.
        for _attempt in range(3):
            port = free_port()
            conf = self._write_config(port)
            self.error_log.write_text("", "utf-8")  # this attempt's lines only
            check = subprocess.run(
                self._argv(conf, "-t"), capture_output=True, text=True, timeout=30
            )
            assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}"
            self.proc = subprocess.Popen(
                self._argv(conf),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_until(
                lambda port=port: self.proc.poll() is not None or _accepts(port),
                READY_TIMEOUT,
                f"nginx listening on 127.0.0.1:{port}",
                self.log,
            )
            # Someone else's listener on the port answers too: nginx then fails to bind.
            if self.proc.poll() is None and "bind() to" not in self.log():
                self.port = port
                return self
            self.stop()
        raise AssertionError(f"nginx did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)

    def log(self) -> str:
        return self.error_log.read_text("utf-8", "replace") if self.error_log.exists() else ""

    def request(self, data: bytes, method: str = "GET") -> RawResponse:
        with RawConnection(("127.0.0.1", self.port), IO_TIMEOUT) as conn:
            return conn.request(data, method)

    def get(
        self, target: str, headers: list[tuple[str, str]] | None = None, host: str = "test"
    ) -> RawResponse:
        """GET on a new connection, closed after the response."""
        head = [*(headers or []), ("Connection", "close")]
        return self.request(simple_request(target=target, host=host, headers=head))

    def post(self, target: str, body: bytes, content_type: str) -> RawResponse:
        """POST on a new connection, closed after the response."""
        head = [("Content-Type", content_type), ("Connection", "close")]
        return self.request(simple_request("POST", target, headers=head, body=body), "POST")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def socket_dir():
    """A short directory for unix sockets (a path must fit in 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="oxgate-deploy-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nginx(tmp_path: Path):
    """Factory: `nginx([socket, ...])` runs the shipped site proxying to those sockets."""
    started: list[Nginx] = []

    def start(sockets: list[Path]) -> Nginx:
        root = tmp_path / f"nginx{len(started)}"
        root.mkdir()
        server = Nginx(root, sockets)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def serve_on(oxgate, sock: Path, *args: str, workers: int = 2) -> OxgateProcess:
    """oxgate on a unix socket, once all its workers are ready."""
    server = oxgate("--bind", f"unix:{sock}", "--workers", str(workers), *args)
    assert server.listening == [f"unix:{sock}"], server.stderr_text()
    wait_ready(server, workers)
    return server


# --- one instance behind the shipped site --------------------------------------------------


def test_nginx_site_passes_get_and_post_with_forwarded_headers_over_a_unix_socket(
    oxgate, nginx, socket_dir
):
    sock = socket_dir / "oxgate.sock"
    serve_on(oxgate, sock, "echo_env")
    proxy = nginx([sock])

    resp = proxy.get("/path?q=1", [("X-Forwarded-For", "203.0.113.7")], host="shop.example")
    assert resp.status == 200, (resp, proxy.log())
    env = resp.json()
    assert env["REQUEST_METHOD"] == "GET"
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/path", "q=1")
    assert env["HTTP_HOST"] == "shop.example"
    # nginx appends the address it saw to the client's list
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7, 127.0.0.1"
    assert env["HTTP_X_FORWARDED_PROTO"] == "http"
    # HTTP/1.1 with an empty Connection header: nginx keeps the upstream connection
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert "HTTP_CONNECTION" not in env

    body = b"name=oxgate&" + b"x" * 100_000
    resp = proxy.post("/form", body, "application/x-www-form-urlencoded")
    assert resp.status == 200, (resp, proxy.log())
    env = resp.json()
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_LENGTH"] == str(len(body))
    assert env["_body"].encode("latin-1") == body
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"


def test_nginx_site_serves_the_flask_example_over_a_unix_socket(oxgate, nginx, socket_dir):
    sock = socket_dir / "oxgate.sock"
    serve_on(oxgate, sock, "--chdir", str(EXAMPLES_DIR / "flask_app"), "app:app")
    proxy = nginx([sock])

    resp = proxy.get("/")
    assert resp.status == 200, (resp, proxy.log())
    assert b"<form" in resp.body

    resp = proxy.post("/form", b"name=nginx", "application/x-www-form-urlencoded")
    assert (resp.status, resp.body) == (200, b"Hello, nginx!"), (resp, proxy.log())

    # A body past nginx's in-memory buffer goes through its temp file, then to oxgate.
    upload = os.urandom(3 << 20)
    resp = proxy.post("/upload", upload, "application/octet-stream")
    assert resp.status == 200, (resp, proxy.log())
    assert resp.json() == {
        "size": len(upload),
        "sha256": hashlib.sha256(upload).hexdigest(),
        "chunked": False,
    }


# --- two instances, restarted one at a time ---------------------------------------------


class MastersSeen:
    """The masters (ppid in /pid's answer) that served the loop's responses so far."""

    def __init__(self, loop: ClientLoop):
        self.loop = loop
        self.seen: set[int] = set()
        self.read = 0

    def __call__(self) -> set[int]:
        # Slicing is one step under the GIL; the clients only ever append.
        new = self.loop.responses[self.read :]
        self.read += len(new)
        self.seen.update(json.loads(r.body)["ppid"] for r in new)
        return self.seen


def test_restarting_two_instances_one_at_a_time_behind_nginx_fails_no_request(
    oxgate, nginx, socket_dir
):
    sockets = [socket_dir / "a.sock", socket_dir / "b.sock"]
    instances = [serve_on(oxgate, s, "ops_app") for s in sockets]
    proxy = nginx(sockets)
    loop = ClientLoop(proxy.port, "/pid", clients=4)
    served = MastersSeen(loop)
    masters: list[int] = [server.pid for server in instances]

    def back_in_rotation(pid: int, what: str) -> None:
        wait_until(
            lambda: pid in served(),
            15.0,  # nginx retries a failed server after fail_timeout (5 s)
            what,
            lambda: f"failures: {loop.failures[:5]}\n{proxy.log()}",
        )

    loop.start()
    try:
        for pid in masters:
            back_in_rotation(pid, f"requests served by the instance with master {pid}")
        for i, sock in enumerate(sockets):
            old = instances[i]
            before = loop.count()
            old.proc.send_signal(signal.SIGTERM)
            assert old.wait_exit(STOP_TIMEOUT) == 0, old.stderr_text()
            assert not sock.exists(), "oxgate leaves no socket file behind"
            new = serve_on(oxgate, sock, "ops_app")
            masters.append(new.pid)
            back_in_rotation(new.pid, f"nginx sending requests to restarted instance {i}")
            assert loop.count() > before, "the other instance served meanwhile"
    finally:
        loop.stop()
    assert not loop.failures, (
        f"{len(loop.failures)} of {loop.count() + len(loop.failures)} requests failed: "
        f"{loop.failures[:5]}\n--- nginx ---\n{proxy.log()[-4000:]}"
    )
    assert set(masters) <= served(), (masters, served())
    assert loop.count() >= 100, loop.count()


def _unread(sock: socket.socket) -> int:
    """Bytes `sock` sent that its unix-socket peer has not read yet (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def test_post_arriving_while_one_instance_drains_is_served_by_the_other(oxgate, nginx, socket_dir):
    sockets = [socket_dir / "a.sock", socket_dir / "b.sock"]
    draining = serve_on(oxgate, sockets[0], "counter", "--header-timeout", "3", workers=1)
    serve_on(oxgate, sockets[1], "counter", workers=1)
    proxy = nginx(sockets)
    with socket.socket(socket.AF_UNIX) as slow:
        # Half a head, read by the worker: the drain waits for it (--header-timeout)
        # without blocking the worker's loop, which stops accepting at once.
        slow.settimeout(IO_TIMEOUT)
        slow.connect(str(sockets[0]))
        slow.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        wait_until(lambda: _unread(slow) == 0, IO_TIMEOUT, "the worker reading the head")
        draining.proc.send_signal(signal.SIGTERM)
        draining.wait_for_stderr(r"Shutting down: waiting for in-flight requests")
        # Round robin over two servers: one of two consecutive requests goes to each.
        statuses = []
        for _ in range(2):
            resp = proxy.post("/", b"sent once", "text/plain")
            statuses.append(resp.status)
    assert draining.wait_exit() == 0, draining.stderr_text()
    assert statuses == [200, 200], f"{statuses}\n--- nginx ---\n{proxy.log()}"
