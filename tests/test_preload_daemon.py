"""--preload (import in the master, workers share it) and --daemon (detach)."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from processes import exists
from support import LISTENING_RE, run_oxgate, wait_until


def _pids(server, n: int = 20) -> list[dict]:
    return [httpx.get(server.url + "/", timeout=5).json() for _ in range(n)]


def test_preload_imports_the_app_once_in_the_master(oxgate):
    server = oxgate("preload_app", "-w", "2", "--preload")
    master = server.proc.pid
    wait_until(lambda: server.stderr_text().count("Worker ready") >= 2, 10, "two workers")
    seen = _pids(server)
    assert {r["imported_in"] for r in seen} == {master}
    assert master not in {r["pid"] for r in seen}
    assert all(r["multiprocess"] for r in seen)


def test_without_preload_each_worker_imports_the_app_itself(oxgate):
    server = oxgate("preload_app", "-w", "2")
    wait_until(lambda: server.stderr_text().count("Worker ready") >= 2, 10, "two workers")
    for r in _pids(server):
        assert r["imported_in"] == r["pid"] != server.proc.pid


FORK_HOOK = """
import gc, os

def post_fork(server, worker):
    os.environ["FROZEN_AT_FORK"] = str(gc.get_freeze_count())
"""


def test_the_loaded_app_is_frozen_out_of_the_collector(oxgate):
    server = oxgate("preload_app")
    (seen,) = _pids(server, 1)
    # The interpreter's and the app's objects: thousands, not a handful.
    assert seen["frozen"] > 1000, seen


def test_preload_freezes_in_the_master_before_the_fork(oxgate, tmp_path: Path):
    conf = tmp_path / "conf.py"
    conf.write_text(FORK_HOOK)
    server = oxgate("preload_app", "--preload", "-c", str(conf))
    (seen,) = _pids(server, 1)
    # post_fork runs in the new worker before it does anything of its own.
    assert seen["frozen_at_fork"] > 1000, seen
    assert seen["frozen"] >= seen["frozen_at_fork"]


def test_no_gc_freeze_leaves_the_collector_alone(oxgate, tmp_path: Path):
    conf = tmp_path / "conf.py"
    conf.write_text(FORK_HOOK)
    for args in ([], ["--preload"]):
        server = oxgate("preload_app", "--no-gc-freeze", "-c", str(conf), *args)
        (seen,) = _pids(server, 1)
        assert seen["frozen"] == seen["frozen_at_fork"] == 0, (args, seen)
        server.stop()


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "no-gc-freeze"])
def test_a_full_collection_in_a_preloaded_worker_keeps_the_app_shared(oxgate, freeze):
    """A collection writes to the GC header of every object it scans: in a worker
    forked after --preload that copies every page holding the app's objects, unless
    they were frozen before the fork."""
    server = oxgate("cow_app", "--preload", *([] if freeze else ["--no-gc-freeze"]))
    httpx.get(server.url + "/", timeout=5)
    grew = httpx.get(server.url + "/collect", timeout=30).json()
    copied_kib = grew["after"] - grew["before"]
    if freeze:
        assert copied_kib < 8 * 1024, grew
    else:
        # The graph is ~40 MiB: the collection copied most of it.
        assert copied_kib > 16 * 1024, grew


def test_preload_of_a_broken_app_exits_4_before_any_worker_starts():
    result = run_oxgate(["--bind", "127.0.0.1:0", "--preload", "-w", "2", "import_error"])
    assert result.returncode == 4, result.stderr
    assert "Booting worker" not in result.stderr
    assert len([x for x in result.stderr.splitlines() if x.startswith("Error: ")]) == 1


def test_daemon_detaches_serves_and_stops_by_its_pidfile(tmp_path: Path):
    pidfile, log = tmp_path / "oxgate.pid", tmp_path / "error.log"
    args = ["--daemon", "--pid", str(pidfile), "--error-logfile", str(log)]
    result = run_oxgate([*args, "--bind", "127.0.0.1:0", "preload_app"], timeout=20)
    # The launcher returns at once; the daemon lives on without it.
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pid"))
    try:
        assert pid != os.getpid() and exists(pid)
        match = wait_until(lambda: LISTENING_RE.search(log.read_text()), 10, "listening")
        assert match.group("pid") == str(pid)
        wait_until(lambda: "Worker ready" in log.read_text(), 10, "worker ready")
        reply = httpx.get(match.group("url") + "/", timeout=5).json()
        assert reply["pid"] != pid
        # A daemon leads no terminal session of the test's: it has its own.
        assert os.getsid(pid) != os.getsid(0)
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not exists(pid), 15, "daemon exit")
        assert not pidfile.exists()
        assert re.search(r"Shutting down: master", log.read_text())
    finally:
        if exists(pid):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)


def test_winch_stops_the_workers_of_a_daemon_and_ttin_brings_one_back(tmp_path: Path):
    pidfile, log = tmp_path / "oxgate.pid", tmp_path / "error.log"
    args = ["--daemon", "--pid", str(pidfile), "--error-logfile", str(log), "-w", "2"]
    assert run_oxgate([*args, "--bind", "127.0.0.1:0", "preload_app"], timeout=20).returncode == 0
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pid"))
    try:
        wait_until(lambda: log.read_text().count("Worker ready") == 2, 10, "two workers")
        os.kill(pid, signal.SIGWINCH)
        wait_until(lambda: log.read_text().count("exited with code 0") == 2, 10, "workers gone")
        assert exists(pid)
        url = LISTENING_RE.search(log.read_text()).group("url")
        os.kill(pid, signal.SIGTTIN)
        wait_until(lambda: log.read_text().count("Worker ready") == 3, 10, "one worker back")
        assert httpx.get(url + "/", timeout=5).status_code == 200
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not exists(pid), 15, "daemon exit")
