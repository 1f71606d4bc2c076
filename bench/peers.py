"""What is benchmarked: the scenarios (which callable, which path, which wrk
options) and the servers (how each one is started for a scenario, or why it is
skipped). Runs nothing; bench/compare.py starts what these describe."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "apps"
VENV_BIN = Path(sys.executable).parent
STATUS = BENCH.parent / ".venv-bench" / "install-status"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    app: str  # MODULE:CALLABLE in bench/apps
    path: str
    connections: int | None = None  # None: the --connections option
    script: str | None = None  # a wrk lua script in bench/wrk
    workers: int = 1
    ceiling_only_hello: bool = False  # nginx answers it (the HTTP ceiling)


SCENARIOS = [
    Scenario("hello", "hello, 13 bytes", "benchapps:hello", "/", ceiling_only_hello=True),
    Scenario("hello-c1", "hello, 1 connection", "benchapps:hello", "/", 1, ceiling_only_hello=True),
    Scenario(
        "hello-w2",
        "hello, 2 worker processes",
        "benchapps:hello",
        "/",
        workers=2,
        ceiling_only_hello=True,
    ),
    Scenario("django-json", "Django JsonResponse", "benchdjango:application", "/json"),
    Scenario(
        "django-template", "Django template, 10 items", "benchdjango:application", "/template"
    ),
    Scenario("echo-64k", "POST echo, 64 KiB", "benchapps:echo", "/", script="post64k.lua"),
    Scenario("stream-1m-cl", "1 MiB in 64 KiB chunks, Content-Length", "benchapps:chunks_cl", "/"),
    Scenario("stream-1m-chunked", "1 MiB in 64 KiB chunks, chunked", "benchapps:chunks", "/"),
    Scenario("file-10m", "10 MiB via wsgi.file_wrapper", "benchapps:file", "/"),
]

# (app, port, workers, tmp dir) -> argv, or a str: why this server skips those workers.
Command = Callable[[str, int, int, Path], "list[str] | str"]


@dataclass(frozen=True)
class Server:
    name: str
    package: str  # whose version is reported
    command: Command
    needs: str  # an importable module or an executable on PATH
    ceiling: bool = False

    def missing(self) -> str | None:
        """Why this server cannot run here, or None."""
        found = (
            (VENV_BIN / self.needs).exists() or shutil.which(self.needs)
            if not self.needs.startswith("py:")
            else importlib.util.find_spec(self.needs[3:]) is not None
        )
        if found:
            return None
        status = STATUS / self.package
        if status.exists():
            return status.read_text().strip() or "not installed"
        return f"{self.needs.removeprefix('py:')} not installed (run make bench)"


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def oxgate(threads: int) -> Command:
    def cmd(app: str, port: int, workers: int, tmp: Path) -> list[str]:
        return _py(
            "-m",
            "oxgate",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            app,
        )

    return cmd


def gunicorn(worker: str) -> Command:
    def cmd(app: str, port: int, workers: int, tmp: Path) -> list[str]:
        extra = ["--threads", "4"] if worker == "gthread" else []
        return [
            str(VENV_BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            worker,
            *extra,
            app,
        ]

    return cmd


def granian(blocking: int | None) -> Command:
    def cmd(app: str, port: int, workers: int, tmp: Path) -> list[str]:
        extra = ["--blocking-threads", str(blocking)] if blocking else []
        return [
            str(VENV_BIN / "granian"),
            "--interface",
            "wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            *extra,
            app,
        ]

    return cmd


def uwsgi(app: str, port: int, workers: int, tmp: Path) -> list[str]:
    # --http-socket closes each connection, as gunicorn's sync worker does. Not
    # --http11-socket: its keep-alive lets one sync process serve one connection until
    # it closes (the other 63 starve), and it hangs on a response without Content-Length.
    # It does not say so, and wrk counts the close as a read error: --add-header does.
    # --master so that TERM has a supervisor to stop.
    return [
        str(VENV_BIN / "uwsgi"),
        "--http-socket",
        f"127.0.0.1:{port}",
        "--master",
        "--processes",
        str(workers),
        "--add-header",
        "Connection: close",
        "--disable-logging",
        "--die-on-term",
        "--need-app",
        "--pythonpath",
        str(APPS),
        "--module",
        app,
    ]


def waitress(app: str, port: int, workers: int, tmp: Path) -> list[str] | str:
    if workers > 1:
        return "single process (a thread pool); no multi-process mode"
    return [str(VENV_BIN / "waitress-serve"), f"--listen=127.0.0.1:{port}", app]


def launched(name: str, multi: bool) -> Command:
    def cmd(app: str, port: int, workers: int, tmp: Path) -> list[str] | str:
        if workers > 1 and not multi:
            return "one process, one event loop; no multi-process mode"
        return _py(str(BENCH / "launch.py"), name, app, str(port), str(workers))

    return cmd


NGINX_CONF = """\
daemon off;
worker_processes {workers};
error_log {tmp}/nginx-error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{http}    server {{
        listen 127.0.0.1:{port};
{location}    }}
}}
"""

# The HTTP ceiling: nginx answering hello itself.
HELLO_LOCATION = """\
        location / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
"""


def nginx(app: str, port: int, workers: int, tmp: Path) -> list[str]:
    conf = tmp / f"nginx-{port}.conf"
    conf.write_text(
        NGINX_CONF.format(workers=workers, tmp=tmp, port=port, http="", location=HELLO_LOCATION)
    )
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-p", str(tmp)]


SERVERS = [
    Server("oxgate", "oxgate", oxgate(1), "py:oxgate"),
    Server("oxgate-t4", "oxgate", oxgate(4), "py:oxgate"),
    Server("gunicorn-sync", "gunicorn", gunicorn("sync"), "gunicorn"),
    Server("gunicorn-gthread4", "gunicorn", gunicorn("gthread"), "gunicorn"),
    Server("granian", "granian", granian(None), "granian"),
    Server("granian-bt1", "granian", granian(1), "granian"),
    Server("uwsgi", "pyuwsgi", uwsgi, "uwsgi"),
    Server("waitress", "waitress", waitress, "waitress-serve"),
    Server("bjoern", "bjoern", launched("bjoern", multi=False), "py:bjoern"),
    Server("fastwsgi", "fastwsgi", launched("fastwsgi", multi=True), "py:fastwsgi"),
    Server("meinheld", "meinheld", launched("meinheld", multi=False), "py:meinheld"),
    Server("nginx", "nginx", nginx, "nginx", ceiling=True),
]
