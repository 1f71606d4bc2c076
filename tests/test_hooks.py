"""Server hooks from a gunicorn-style config file, with gunicorn's names and arguments."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from support import wait_until

HOOKS = """
import os

EVENTS = {events!r}


def _note(*parts):
    with open(EVENTS, "a") as f:
        f.write(" ".join(str(p) for p in parts) + "\\n")


def on_starting(server):
    _note("on_starting", server.pid == os.getpid(), server.num_workers)


def when_ready(server):
    server.log.info("hook says %s", "ready")
    _note("when_ready", server.pid == os.getpid())


def pre_fork(server, worker):
    _note("pre_fork", server.pid == os.getpid(), worker.age)


def post_fork(server, worker):
    _note("post_fork", worker.pid == os.getpid(), server.pid == os.getppid())


def post_worker_init(worker):
    _note("post_worker_init", worker.pid == os.getpid())


def pre_request(worker, req):
    _note("pre_request", req.method, req.path, req.query)


def post_request(worker, req, environ, resp):
    _note("post_request", req.path, environ["PATH_INFO"], resp.status)


def child_exit(server, worker):
    _note("child_exit", worker.pid != os.getpid())


def worker_exit(server, worker):
    _note("worker_exit", worker.pid == os.getpid())


def nworkers_changed(server, new_value, old_value):
    _note("nworkers_changed", new_value, old_value)


def on_reload(server):
    _note("on_reload")


def on_exit(server):
    _note("on_exit", server.pid == os.getpid())
"""


def _events(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_hooks_run_at_their_moments_with_gunicorns_arguments(oxgate, tmp_path: Path):
    events = tmp_path / "hooks.log"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(HOOKS.format(events=str(events)))
    server = oxgate("-c", str(conf), "echo_env")
    wait_until(lambda: "post_worker_init True" in _events(events), 10, "post_worker_init")
    assert httpx.get(server.url + "/some/where?x=1", timeout=5).status_code == 200
    wait_until(lambda: any(e.startswith("post_request") for e in _events(events)), 5, "post")
    server.proc.send_signal(signal.SIGTTIN)
    wait_until(lambda: "nworkers_changed 2 1" in _events(events), 10, "nworkers_changed")
    wait_until(lambda: _events(events).count("post_worker_init True") >= 2, 10, "2nd worker")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "on_reload" in _events(events), 10, "on_reload")
    wait_until(lambda: _events(events).count("child_exit True") >= 2, 15, "old workers gone")
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0
    seen = _events(events)
    assert seen[0] == "on_starting True 1"
    assert "when_ready True" in seen
    assert seen.index("when_ready True") < seen.index("pre_fork True 1")
    assert "post_fork True True" in seen
    assert "pre_request GET /some/where x=1" in seen
    assert "post_request /some/where /some/where 200 OK" in seen
    assert seen.count("worker_exit True") >= 4  # two stopped by HUP, two by TERM
    assert seen[-1] == "on_exit True"
    assert "hook says ready" in server.stderr_text()


def test_a_hook_that_raises_is_logged_and_the_server_serves_on(oxgate, tmp_path: Path):
    conf = tmp_path / "oxgate.conf.py"
    conf.write_text("def pre_request(worker, req):\n    raise RuntimeError('hook broke')\n")
    server = oxgate("-c", str(conf), "echo_env")
    assert httpx.get(server.url + "/", timeout=5).status_code == 200
    wait_until(lambda: "Exception in pre_request hook" in server.stderr_text(), 5, "log line")
    assert "RuntimeError: hook broke" in server.stderr_text()
    assert httpx.get(server.url + "/", timeout=5).status_code == 200
