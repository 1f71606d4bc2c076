"""SIGUSR2: a new master on the same sockets, then TERM to the old one; nothing dropped."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
from processes import exists
from support import wait_until


class Load:
    """Two clients, a new connection per request, until stopped; bounded."""

    def __init__(self, url: str):
        self.url = url
        self.pids: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                resp = httpx.get(self.url + "/pid", timeout=10)
                resp.raise_for_status()
                self.pids.append(resp.json()["pid"])
            except Exception as e:  # every failure counts
                self.failures.append(repr(e))


def test_usr2_upgrade_under_load_drops_nothing(oxgate, tmp_path: Path):
    pidfile = tmp_path / "oxgate.pid"
    server = oxgate("crashy", "-w", "2", "--pid", str(pidfile))
    old = server.proc.pid
    wait_until(lambda: server.stderr_text().count("Worker ready") >= 2, 10, "old workers")
    new = None
    try:
        with Load(server.url) as load:
            wait_until(lambda: len(load.pids) > 20, 10, "traffic on the old master")
            server.proc.send_signal(signal.SIGUSR2)
            new = int(
                wait_until(
                    lambda: re.search(r"started a new master \(pid:(\d+)\)", server.stderr_text()),
                    10,
                    "the new master",
                ).group(1)
            )
            wait_until(
                lambda: f"Listening at: {server.url} ({new})" in server.stderr_text(),
                10,
                "the new master listening on the same socket",
            )
            wait_until(lambda: server.stderr_text().count("Worker ready") >= 4, 10, "new workers")
            assert pidfile.read_text().strip() == str(new)
            assert Path(f"{pidfile}.oldbin").read_text().strip() == str(old)
            server.proc.send_signal(signal.SIGTERM)
            assert server.wait_exit(15) == 0
            served_before = len(load.pids)
            wait_until(lambda: len(load.pids) > served_before + 20, 10, "traffic on the new one")
        assert load.failures == [], load.failures[:5]
        assert exists(new)
        # the last answers come from the new master's workers
        after_usr2 = server.stderr_text().split("started a new master", 1)[1]
        new_workers = {int(p) for p in re.findall(r"\[(\d+)\] \[INFO\] Worker ready", after_usr2)}
        assert len(new_workers) == 2
        assert set(load.pids[-10:]) <= new_workers
        assert pidfile.read_text().strip() == str(new)
        assert not Path(f"{pidfile}.oldbin").exists()
    finally:
        if new and exists(new):
            os.kill(new, signal.SIGTERM)
            wait_until(lambda: not exists(new), 15, "the new master to stop")
    assert not pidfile.exists()


def test_usr2_with_a_broken_install_keeps_the_old_master(oxgate, tmp_path: Path):
    pidfile = tmp_path / "oxgate.pid"
    # The new master runs from the same cwd and env; make its app fail to import.
    app = tmp_path / "flaky_app.py"
    app.write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n"
        "    return [b'ok']\n"
    )
    server = oxgate("--chdir", str(tmp_path), "-w", "1", "--pid", str(pidfile), "flaky_app")
    wait_until(lambda: "Worker ready" in server.stderr_text(), 10, "worker")
    app.write_text("raise RuntimeError('broken release')\n")
    server.proc.send_signal(signal.SIGUSR2)
    wait_until(lambda: "this one goes on serving" in server.stderr_text(), 15, "the failed upgrade")
    assert httpx.get(server.url + "/", timeout=5).text == "ok"
    assert pidfile.read_text().strip() == str(server.proc.pid)
    assert not Path(f"{pidfile}.oldbin").exists()


def _ready_workers(server) -> set[int]:
    return {int(p) for p in re.findall(r"Worker ready \(pid: (\d+)\)", server.stderr_text())}


def test_workers_stop_when_their_master_is_killed_outright(oxgate):
    server = oxgate("crashy", "-w", "2")
    wait_until(lambda: len(_ready_workers(server)) >= 2, 10, "two workers")
    workers = _ready_workers(server)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    wait_until(lambda: not any(exists(p) for p in workers), 10, "orphaned workers to exit")
