"""Operating the prefork master: memory limit, SO_REUSEPORT, log rotation, privileges,
and the systemd integration (sd_notify and socket activation).

Every test starts real oxgate processes (a master that forks real workers), talks to
them over 127.0.0.1 or unix sockets, and stops them; any worker still alive after its
master stopped is killed at teardown. Workers are found through the log lines

    Booting worker with pid: PID
    Worker ready (pid: PID)

and through /proc.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import signal
import socket
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import processes
import pytest
from processes import ClientLoop, alive, live_children, poll
from support import (
    ERROR_LOG_LINE_RE,
    IO_TIMEOUT,
    OxgateProcess,
    RawConnection,
    RawResponse,
    base_env,
    error_lines,
    run_oxgate,
    simple_request,
)

APP = "ops_app"

BOOTING_RE = re.compile(r"Booting worker with pid: (\d+)")
READY_RE = re.compile(r"Worker ready \(pid: (\d+)\)")

# a replacement worker boots in well under a second; generous for a loaded CI box
REPLACE_TIMEOUT = 10.0


# --- processes ---------------------------------------------------------------------------


def proc_ids(pid: int, field: str) -> list[int]:
    """The `Uid:` or `Gid:` line of /proc/PID/status: real, effective, saved, fs."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no {field} line for {pid}")


class Server(OxgateProcess):
    """An OxgateProcess whose log may be a file, and whose argv may be any command.

    `log_file`: where the error log goes (--error-logfile), else stderr.
    `argv`: a full command line (e.g. an `sh -c '... exec python -m oxgate ...'`
    wrapper that execs oxgate, so the process started *is* the master).
    """

    def __init__(
        self,
        args: list[str],
        *,
        log_file: Path | None = None,
        argv: list[str] | None = None,
        stdin_fd: int | None = None,
        **kwargs,
    ):
        if log_file is not None:
            kwargs.setdefault("ready", log_file)
        if stdin_fd is not None:
            kwargs["stdin"] = stdin_fd
        super().__init__(args, **kwargs)
        if argv is not None:
            self.args = argv
        self.log_file = log_file

    def log(self) -> str:
        if self.log_file is None:
            return self.stderr_text()
        try:
            return self.log_file.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def all_output(self) -> str:
        parts = [f"--- stderr ---\n{self.stderr_text()}"]
        if self.log_file is not None:
            parts.append(f"--- {self.log_file.name} ---\n{self.log()}")
        return "\n".join(parts)

    def booted(self) -> list[int]:
        return list(dict.fromkeys(int(p) for p in BOOTING_RE.findall(self.log())))

    def ready_pids(self) -> list[int]:
        return list(dict.fromkeys(int(p) for p in READY_RE.findall(self.log())))

    def wait_ready(self, n: int, exclude=(), timeout: float = 15.0) -> list[int]:
        """Wait until `n` workers not in `exclude` logged `Worker ready`; their pids."""
        exclude = set(exclude)

        def fresh():
            pids = [p for p in self.ready_pids() if p not in exclude]
            if len(pids) >= n:
                return pids
            if self.proc.poll() is not None:
                self._join_pumps()
                raise AssertionError(
                    f"the master exited ({self.proc.returncode}) before {n} worker(s) beyond "
                    f"{sorted(exclude)} were ready\n{self.all_output()}"
                )
            return None

        return poll(
            fresh,
            timeout,
            lambda: f"{n} 'Worker ready' line(s) beyond {sorted(exclude)}",
            self.all_output,
        )

    def lines(self, *parts: str) -> list[str]:
        return [ln for ln in self.log().splitlines() if all(p in ln for p in parts)]

    def wait_line(self, *parts: str, timeout: float = IO_TIMEOUT) -> str:
        found = poll(
            lambda: self.lines(*parts),
            timeout,
            lambda: f"a log line with {parts}",
            self.all_output,
        )
        return found[0]


def reap(server: OxgateProcess) -> None:
    """processes.reap, with the workers a Server's log (maybe a file) says it booted."""
    processes.reap(server, server.booted() if isinstance(server, Server) else [])


@pytest.fixture
def servers():
    """Factory: `servers(args, ...)` builds a Server (not started); all reaped at teardown."""
    made: list[Server] = []

    def make(args: list[str], **kwargs) -> Server:
        kwargs.setdefault("env", base_env())
        server = Server(args, **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        reap(server)


def stop_cleanly(server: Server) -> None:
    """SIGTERM: the master exits 0 and leaves no worker behind."""
    workers = server.booted()
    code = server.stop(signal.SIGTERM)
    assert code == 0, f"exit code {code}\n{server.all_output()}"
    left = [p for p in workers if alive(p)]
    assert not left, f"workers {left} outlived the master"


# --- HTTP --------------------------------------------------------------------------------


def get_at(address, path: str, family: int = socket.AF_INET) -> RawResponse:
    """GET on a fresh connection (Connection: close) to `address`."""
    with RawConnection(address, IO_TIMEOUT, family=family) as conn:
        return conn.request(simple_request(target=path, headers=[("Connection", "close")]))


def get_json_at(address, path: str, family: int = socket.AF_INET) -> dict:
    resp = get_at(address, path, family)
    assert resp.status == 200, resp
    return resp.json()


def collect(address, path: str, key, want: int, timeout: float = 10.0, family=socket.AF_INET):
    """GET `path` on fresh connections, 4 at a time, until `want` distinct `key(json)`.

    Which process accepts a new connection is up to the kernel, so this keeps asking
    (bounded) rather than assuming a distribution. Returns {key: count}.
    """
    seen: dict[object, int] = {}
    deadline = time.monotonic() + timeout

    def one(_):
        return get_json_at(address, path, family)

    with ThreadPoolExecutor(4) as pool:
        while len(seen) < want and time.monotonic() < deadline:
            for info in pool.map(one, range(8)):
                k = key(info)
                seen[k] = seen.get(k, 0) + 1
    return seen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- --max-worker-memory -----------------------------------------------------------------


def test_max_worker_memory_replaces_a_worker_past_the_limit_without_failing_a_request(servers):
    limit = 60
    server = servers(["--bind", "127.0.0.1:0", "--max-worker-memory", str(limit), APP]).start()
    (old,) = server.wait_ready(1)
    address = ("127.0.0.1", server.port)
    loop = ClientLoop(server.port, "/pid", clients=4).start()
    try:
        poll(lambda: loop.pids(), 5, lambda: "the client loop's first answer", server.all_output)
        # one worker, so every /grow lands on it: 3 x 20 MiB on top of its own size
        held = 0
        for _ in range(3):
            info = get_json_at(address, "/grow")
            if info["pid"] != old:  # already replaced (a big interpreter)
                break
            held = info["held_mib"]
        assert held >= 20, f"no /grow reached worker {old}\n{server.all_output()}"
        warning = server.wait_line(f"Worker (pid:{old}) uses", timeout=REPLACE_TIMEOUT)
        (new,) = server.wait_ready(1, exclude=[old], timeout=REPLACE_TIMEOUT)
        poll(lambda: not alive(old), REPLACE_TIMEOUT, lambda: f"{old} to exit", server.all_output)
        poll(
            lambda: new in loop.pids(),
            REPLACE_TIMEOUT,
            lambda: f"an answer from {new} in the client loop",
            server.all_output,
        )
    finally:
        loop.stop()
    assert loop.failures == [], (
        f"{len(loop.failures)} failed requests ({loop.retries} retried after an idle "
        f"close): {loop.failures[:10]}\n{server.all_output()}"
    )
    m = ERROR_LOG_LINE_RE.match(warning)
    assert m, warning
    assert m.group("level") == "WARNING", warning
    assert int(m.group("pid")) == server.pid, "the master writes the warning"
    assert "over --max-worker-memory" in warning, warning
    uses = re.search(r"uses (\d+) MiB", warning)
    assert uses and int(uses.group(1)) > limit, warning
    # the replacement was ready before the old worker was told to stop: the first line
    # the old worker wrote after the warning comes after the replacement's ready line
    log = server.log().splitlines()
    at_warning = log.index(warning)
    at_ready = log.index(next(ln for ln in log if f"Worker ready (pid: {new})" in ln))
    old_after = [i for i, ln in enumerate(log) if i > at_warning and f"] [{old}] [" in ln]
    assert at_warning < at_ready, "\n".join(log)
    assert old_after and old_after[0] > at_ready, "\n".join(log)
    assert "Shutting down" in log[old_after[0]], "\n".join(log)
    # ... and it stopped gracefully (SIGTERM), not killed
    server.wait_line(f"Worker (pid:{old}) exited with code 0")
    # the new worker serves, with none of the old one's memory
    info = get_json_at(address, "/pid")
    assert info == {"pid": new, "ppid": server.pid, "held_mib": 0}
    assert live_children(server.pid) == [new]
    assert server.lines("over --max-worker-memory") == [warning], "replaced once"
    stop_cleanly(server)


def test_max_worker_memory_0_is_off(servers):
    server = servers(["--bind", "127.0.0.1:0", "--max-worker-memory", "0", APP]).start()
    (worker,) = server.wait_ready(1)
    address = ("127.0.0.1", server.port)
    for _ in range(3):
        assert get_json_at(address, "/grow")["pid"] == worker
    # the master checks about once a second: give it a few rounds to (wrongly) act
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert not server.lines("max-worker-memory"), server.all_output()
        assert alive(worker)
        time.sleep(0.1)
    assert get_json_at(address, "/pid") == {"pid": worker, "ppid": server.pid, "held_mib": 60}
    stop_cleanly(server)


# --- --reuse-port ------------------------------------------------------------------------


def test_reuse_port_lets_two_servers_share_one_port(servers):
    port = free_port()
    bind = f"127.0.0.1:{port}"
    first = servers(["--bind", bind, "--reuse-port", APP]).start()
    second = servers(["--bind", bind, "--reuse-port", APP]).start()
    assert first.port == second.port == port
    first.wait_ready(1)
    second.wait_ready(1)
    # both masters' workers take connections on the one port
    masters = collect(("127.0.0.1", port), "/pid", lambda info: info["ppid"], want=2)
    assert set(masters) == {first.pid, second.pid}, (masters, first.pid, second.pid)
    # one stopping leaves the other serving the port
    stop_cleanly(first)
    for _ in range(10):
        assert get_json_at(("127.0.0.1", port), "/pid")["ppid"] == second.pid
    stop_cleanly(second)


@pytest.mark.parametrize("first_flag", [False, True], ids=["first-plain", "first-reuse-port"])
def test_without_reuse_port_the_second_server_cannot_bind_and_exits_3(servers, first_flag):
    port = free_port()
    bind = f"127.0.0.1:{port}"
    first = servers(["--bind", bind, *(["--reuse-port"] if first_flag else []), APP]).start()
    result = run_oxgate(["--bind", bind, APP])
    lines = error_lines(result.stderr)
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert len(lines) == 1, f"expected one 'Error: ' line, got:\n{result.stderr}"
    assert bind in lines[0], lines[0]
    assert "Booting worker" not in result.stderr
    # the first one is untouched
    assert get_json_at(("127.0.0.1", port), "/pid")["ppid"] == first.pid
    stop_cleanly(first)


# --- SIGUSR1: reopen the log files -------------------------------------------------------


def test_sigusr1_reopens_the_error_and_access_logs_after_they_were_moved(servers, tmp_path):
    err, acc = tmp_path / "error.log", tmp_path / "access.log"
    server = servers(
        [
            "--bind",
            "127.0.0.1:0",
            "-w",
            "2",
            "--error-logfile",
            str(err),
            "--access-logfile",
            str(acc),
            "--access-logformat",
            '%(p)s "%(r)s" %(s)s',
            APP,
        ],
        log_file=err,
    ).start()
    workers = server.wait_ready(2)
    address = ("127.0.0.1", server.port)
    # both workers log to the access log before the rotation
    answered = collect(address, "/pid?before", lambda info: info["pid"], want=2)
    assert set(answered) == set(workers), (answered, workers)
    before_lines = sum(answered.values())
    poll(
        lambda: len(acc.read_text().splitlines()) == before_lines,
        IO_TIMEOUT,
        lambda: f"{before_lines} access log lines, have {acc.read_text()!r}",
        server.all_output,
    )

    # logrotate: move the files away, then SIGUSR1
    err_old, acc_old = tmp_path / "error.log.1", tmp_path / "access.log.1"
    err.rename(err_old)
    acc.rename(acc_old)
    os.kill(server.pid, signal.SIGUSR1)
    for pid in workers:
        line = server.wait_line(f"[{pid}] [INFO] Reopened log files")
        assert ERROR_LOG_LINE_RE.match(line), line
    old_err_text = err_old.read_text()
    # the master reopens first, then says so once, in the new file
    announced = [
        ln
        for ln in err.read_text().splitlines()
        if f"[{server.pid}] [INFO] Handling signal: usr1" in ln
    ]
    assert len(announced) == 1, old_err_text + err.read_text()
    assert "reopened log files" in announced[0], announced
    assert "Handling signal: usr1" not in old_err_text, old_err_text
    old_acc_text = acc_old.read_text()
    assert len(old_acc_text.splitlines()) == before_lines, old_acc_text

    answered = collect(address, "/pid?after", lambda info: info["pid"], want=2)
    assert set(answered) == set(workers), (answered, workers)
    after_lines = sum(answered.values())

    def new_access_lines():
        return acc.read_text().splitlines() if acc.exists() else []

    poll(
        lambda: len(new_access_lines()) == after_lines,
        IO_TIMEOUT,
        lambda: f"{after_lines} lines in the new access log, have {new_access_lines()}",
        server.all_output,
    )
    lines = new_access_lines()
    assert all('"GET /pid?after HTTP/1.1" 200' in ln for ln in lines), lines
    assert {f"<{pid}>" for pid in workers} == {ln.split()[0] for ln in lines}, lines
    # the moved files did not grow
    assert acc_old.read_text() == old_acc_text
    assert err_old.read_text() == old_err_text

    assert server.proc.poll() is None
    assert server.stop(signal.SIGTERM) == 0, server.all_output()
    # the master reopened its log too: its shutdown lines are in the new file only
    new_err = err.read_text()
    assert f"[{server.pid}] [INFO] Shutting down: master" in new_err, new_err
    assert "Shutting down" not in err_old.read_text()
    assert err_old.read_text() == old_err_text


# --- --user, --group, --umask ------------------------------------------------------------


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")


@needs_root
@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_user_group_and_umask_apply_to_the_workers_not_the_master(servers, preload):
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    server = servers(
        [
            *(["--preload"] if preload else []),
            "--bind",
            "127.0.0.1:0",
            "-w",
            "2",
            "--user",
            "nobody",
            "--group",
            group,
            "--umask",
            "0o027",
            APP,
        ]
    ).start()
    workers = server.wait_ready(2)
    address = ("127.0.0.1", server.port)
    seen = collect(address, "/ids", lambda info: json.dumps(info, sort_keys=True), want=2)
    infos = [json.loads(k) for k in seen]
    assert {info["pid"] for info in infos} == set(workers), (infos, workers)
    for info in infos:
        assert info["uid"] == info["euid"] == nobody.pw_uid, info
        assert info["gid"] == info["egid"] == nobody.pw_gid, info
        assert info["umask"] == 0o027, oct(info["umask"])
    for pid in workers:
        assert proc_ids(pid, "Uid") == [nobody.pw_uid] * 4
        assert proc_ids(pid, "Gid") == [nobody.pw_gid] * 4
    # the master keeps root (it must be able to fork more workers as nobody, bind, ...)
    assert proc_ids(server.pid, "Uid") == [0, 0, 0, 0]
    assert proc_ids(server.pid, "Gid")[:2] == [os.getgid(), os.getegid()]
    # a replacement worker gets the same treatment
    os.kill(workers[0], signal.SIGKILL)
    (new,) = server.wait_ready(1, exclude=workers, timeout=REPLACE_TIMEOUT)
    assert proc_ids(new, "Uid") == [nobody.pw_uid] * 4
    assert proc_ids(new, "Gid") == [nobody.pw_gid] * 4
    stop_cleanly(server)


@needs_root
def test_numeric_user_and_group(servers):
    nobody = pwd.getpwnam("nobody")
    server = servers(
        [
            # (the no-preload path is the test above's)
            "--preload",
            "--bind",
            "127.0.0.1:0",
            "--user",
            str(nobody.pw_uid),
            "--group",
            str(nobody.pw_gid),
            APP,
        ]
    ).start()
    server.wait_ready(1)
    info = get_json_at(("127.0.0.1", server.port), "/ids")
    assert (info["uid"], info["gid"]) == (nobody.pw_uid, nobody.pw_gid), info
    stop_cleanly(server)


def test_umask_without_user_applies_to_the_workers(servers):
    server = servers(["--bind", "127.0.0.1:0", "--umask", "0o027", APP]).start()
    server.wait_ready(1)
    info = get_json_at(("127.0.0.1", server.port), "/ids")
    assert info["umask"] == 0o027, oct(info["umask"])
    assert (info["uid"], info["gid"]) == (os.getuid(), os.getgid())
    stop_cleanly(server)


@pytest.mark.parametrize(
    "args,mention",
    [
        (["--user", "no-such-user-xyz"], "no-such-user-xyz"),
        (["--group", "no-such-group-xyz"], "no-such-group-xyz"),
    ],
    ids=["user", "group"],
)
def test_unknown_user_or_group_exits_2_with_one_error_line(args, mention):
    result = run_oxgate(["--bind", "127.0.0.1:0", *args, APP])
    lines = error_lines(result.stderr)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, f"expected one 'Error: ' line, got:\n{result.stderr}"
    assert mention in lines[0], lines[0]
    assert "Listening at" not in result.stderr
    assert "Booting worker" not in result.stderr


@pytest.mark.parametrize("value", ["rwx", "0o999", ""])
def test_bad_umask_exits_2(value):
    result = run_oxgate(["--bind", "127.0.0.1:0", "--umask", value, APP])
    lines = error_lines(result.stderr)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, f"expected one 'Error: ' line, got:\n{result.stderr}"
    assert "umask" in lines[0].lower(), lines[0]
    assert "Booting worker" not in result.stderr


# --- systemd: sd_notify ------------------------------------------------------------------


class NotifyListener:
    """The systemd side of $NOTIFY_SOCKET: a datagram socket that keeps what arrives."""

    def __init__(self, address: str | bytes):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[tuple[float, str]] = []

    def close(self) -> None:
        self.sock.close()

    def states(self) -> list[str]:
        return [m for _, m in self.messages]

    def wait_for(self, state: str, after: int = 0, timeout: float = 15.0, on_arrival=None) -> int:
        """Index of the first message from `after` on holding the line `state`.

        `on_arrival(message)` runs as soon as that message is received.
        """
        deadline = time.monotonic() + timeout
        while True:
            for i in range(after, len(self.messages)):
                if state in self.messages[i][1].split("\n"):
                    return i
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {state!r} within {timeout}s; got {self.states()}")
            self.sock.settimeout(min(remaining, 0.5))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            message = data.decode("utf-8", "replace")
            self.messages.append((time.monotonic(), message))
            if on_arrival is not None and state in message.split("\n"):
                on_arrival(message)

    def no_more(self, state: str, after: int, wait: float) -> None:
        """Assert no message holding `state` arrives at index >= after within `wait` s."""
        with pytest.raises(AssertionError, match="no "):
            self.wait_for(state, after=after, timeout=wait)


def _sd_notify_life_cycle(servers, tmp_path: Path, notify_env: str, bind_to) -> None:
    listener = NotifyListener(bind_to)
    try:
        err = tmp_path / "error.log"
        server = servers(
            ["--bind", "127.0.0.1:0", "-w", "2", "--error-logfile", str(err), APP],
            env=base_env({"NOTIFY_SOCKET": notify_env}),
            log_file=err,
        ).start()
        ready_at_notify: list[list[int]] = []
        # the log file is written before the master hears that a worker is ready, so
        # when READY=1 arrives both ready lines must already be in it
        first = listener.wait_for(
            "READY=1", on_arrival=lambda _m: ready_at_notify.append(server.ready_pids())
        )
        assert len(ready_at_notify) == 1 and len(ready_at_notify[0]) == 2, (
            f"READY=1 came with ready workers {ready_at_notify}\n{server.all_output()}"
        )
        workers = ready_at_notify[0]
        message = listener.messages[first][1]
        assert f"MAINPID={server.pid}" in message.split("\n"), message
        assert not any("RELOADING=1" in m or "STOPPING=1" in m for m in listener.states())
        listener.no_more("READY=1", first + 1, wait=1.0)
        assert get_json_at(("127.0.0.1", server.port), "/pid")["ppid"] == server.pid

        # SIGHUP: RELOADING=1, then READY=1 again once the new workers are ready
        os.kill(server.pid, signal.SIGHUP)
        reloading = listener.wait_for("RELOADING=1", after=first + 1)
        again: list[list[int]] = []
        ready2 = listener.wait_for(
            "READY=1", after=reloading + 1, on_arrival=lambda _m: again.append(server.ready_pids())
        )
        new = [p for p in again[0] if p not in workers]
        assert len(new) == 2, f"READY=1 after a reload with new workers {new}"
        assert not any("STOPPING=1" in m for m in listener.states())

        # SIGTERM: STOPPING=1
        os.kill(server.pid, signal.SIGTERM)
        listener.wait_for("STOPPING=1", after=ready2 + 1)
        assert server.wait_exit() == 0, server.all_output()
        assert "READY=1" not in listener.states()[-1].split("\n")
        # sending never failed
        assert "cannot notify" not in server.log(), server.all_output()
    finally:
        listener.close()


def test_sd_notify_ready_reloading_stopping(servers, tmp_path):
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 100, "unix socket path too long for this tmp_path"
    _sd_notify_life_cycle(servers, tmp_path, str(path), str(path))


def test_sd_notify_abstract_socket(servers, tmp_path):
    name = f"oxgate-test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    _sd_notify_life_cycle(servers, tmp_path, "@" + name, b"\0" + name.encode())


def test_a_notify_socket_nobody_listens_on_does_not_stop_the_server(servers, tmp_path):
    # a NOTIFY_SOCKET nobody listens on: a warning at most, never a failure
    path = tmp_path / "nobody-listens.sock"
    server = servers(
        ["--bind", "127.0.0.1:0", APP], env=base_env({"NOTIFY_SOCKET": str(path)})
    ).start()
    server.wait_ready(1)
    assert get_json_at(("127.0.0.1", server.port), "/pid")["ppid"] == server.pid
    stop_cleanly(server)


# --- systemd: socket activation ----------------------------------------------------------


def activated(servers, sock: socket.socket, args: list[str], listen_pid: str = "$$", **kwargs):
    """Start oxgate with `sock` as fd 3 and LISTEN_FDS=1, as systemd does.

    The socket comes in as sh's stdin (POSIX sh cannot name descriptors above 9); sh
    moves it to fd 3, gives stdin /dev/null and execs python, so the process started is
    oxgate itself and `$$` (sh's pid) is oxgate's pid.
    """
    script = f'exec 3<&0 0</dev/null; LISTEN_PID={listen_pid} LISTEN_FDS=1 exec "$0" -m oxgate "$@"'
    argv = ["sh", "-c", script, sys.executable, *args]
    return servers(args, argv=argv, stdin_fd=sock.fileno(), **kwargs).start()


def test_socket_activation_serves_the_passed_tcp_socket(servers):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port = sock.getsockname()[1]
        server = activated(servers, sock, ["-w", "2", APP])
    # the test's own copy is closed: only oxgate holds the listening socket now
    assert server.listening == [f"http://127.0.0.1:{port}"], server.stderr_text()
    assert server.port == port
    assert Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")[1:3] == [
        b"-m",
        b"oxgate",
    ], "sh must exec oxgate"
    workers = server.wait_ready(2)
    masters = collect(("127.0.0.1", port), "/pid", lambda info: (info["ppid"], info["pid"]), 2)
    assert {m for m, _ in masters} == {server.pid}
    assert {w for _, w in masters} == set(workers)
    stop_cleanly(server)


def test_socket_activation_serves_the_passed_unix_socket(servers, tmp_path):
    path = tmp_path / "activated.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen(64)
        server = activated(servers, sock, [APP])
    assert server.listening == [f"unix:{path}"], server.stderr_text()
    (worker,) = server.wait_ready(1)
    for _ in range(3):
        info = get_json_at(str(path), "/pid", family=socket.AF_UNIX)
        assert (info["pid"], info["ppid"]) == (worker, server.pid)
    stop_cleanly(server)


def test_socket_activation_replaces_bind(servers):
    # systemd's sockets win over --bind (which the config may still carry)
    taken_port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port = sock.getsockname()[1]
        server = activated(servers, sock, ["--bind", f"127.0.0.1:{taken_port}", APP])
    assert server.listening == [f"http://127.0.0.1:{port}"], server.stderr_text()
    server.wait_ready(1)
    assert get_json_at(("127.0.0.1", port), "/pid")["ppid"] == server.pid
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", taken_port), timeout=IO_TIMEOUT).close()
    stop_cleanly(server)


def test_socket_activation_for_another_pid_is_ignored(servers):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        passed_port = sock.getsockname()[1]
        # LISTEN_PID names another process (pid 1): the descriptors are not oxgate's
        server = activated(servers, sock, ["--bind", "127.0.0.1:0", APP], listen_pid="1")
        assert server.port != passed_port
        assert server.listening == [f"http://127.0.0.1:{server.port}"], server.stderr_text()
        server.wait_ready(1)
        assert get_json_at(("127.0.0.1", server.port), "/pid")["ppid"] == server.pid
        # a connection to the passed socket is not taken by oxgate: the test accepts it
        sock.settimeout(IO_TIMEOUT)
        with socket.create_connection(("127.0.0.1", passed_port), timeout=IO_TIMEOUT) as c:
            c.sendall(simple_request(target="/pid", headers=[("Connection", "close")]))
            peer, _ = sock.accept()
            with peer:
                assert peer.getpeername() == c.getsockname()
        stop_cleanly(server)
