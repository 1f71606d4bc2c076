"""The prefork master: workers, crashes, timeouts, signals, recycling, the pid file.

Every test starts a real master (which forks real workers), talks to it over real
sockets, and stops it; workers are found through the log lines

    Booting worker with pid: PID
    Worker ready (pid: PID)

and through /proc, and any worker still alive after its master stopped is killed by
the fixture (a leaked worker would outlive the test run).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from processes import (
    ClientLoop,
    alive,
    booted,
    live_children,
    parent_of,
    poll,
    reap,
    wait_ready,
)
from support import (
    IO_TIMEOUT,
    IncompleteResponse,
    OxgateProcess,
    RawResponse,
    base_env,
    error_lines,
    read_events,
    run_oxgate,
    simple_request,
    wait_until,
)

# "within a second or two" for a replacement worker; generous for a loaded CI box
REPLACE_TIMEOUT = 5.0


# --- processes ---------------------------------------------------------------------------


def wait_dead(pids, timeout: float = 10.0, server: OxgateProcess | None = None) -> None:
    pids = set(pids)
    poll(
        lambda: not any(alive(p) for p in pids),
        timeout,
        lambda: f"workers {sorted(p for p in pids if alive(p))} to exit",
        server,
    )


def log_lines(server: OxgateProcess, *parts: str) -> list[str]:
    return [ln for ln in server.stderr_text().splitlines() if all(p in ln for p in parts)]


def wait_line(server: OxgateProcess, *parts: str, timeout: float = IO_TIMEOUT) -> str:
    """The first stderr line that contains every one of `parts`."""
    found = poll(
        lambda: log_lines(server, *parts), timeout, lambda: f"a log line with {parts}", server
    )
    return found[0]


def wait_started(events_file: Path, path: str, n: int = 1, timeout: float = IO_TIMEOUT):
    """Pids of the workers that recorded `started:PATH:PID`, once there are `n`."""
    rx = re.compile(rf"^started:{re.escape(path)}:(\d+)$")

    def pids():
        found = [int(m.group(1)) for m in map(rx.match, read_events(events_file)) if m]
        return found if len(found) >= n else None

    return poll(pids, timeout, lambda: f"{n} x started:{path} in {read_events(events_file)}")


# --- HTTP --------------------------------------------------------------------------------


def get(server: OxgateProcess, path: str, timeout: float = IO_TIMEOUT) -> RawResponse:
    """GET on a fresh connection (Connection: close)."""
    with server.connect(timeout) as conn:
        return conn.request(simple_request(target=path, headers=[("Connection", "close")]))


def get_pid(server: OxgateProcess) -> dict:
    resp = get(server, "/pid")
    assert resp.status == 200, resp
    return resp.json()


def collect_pids(server: OxgateProcess, want: int, timeout: float = 10.0) -> set[int]:
    """Fresh-connection requests, 4 at a time, until `want` distinct workers answered."""
    seen = collect_answers(server, "/pid", lambda resp: resp.json()["pid"], want, timeout)
    return set(seen)


def collect_answers(server: OxgateProcess, path: str, key, want: int, timeout: float = 10.0):
    """GET `path` on fresh connections, 4 at a time, until `want` distinct `key(resp)`.

    Returns {key: [response texts]}. Which worker accepts a new connection is up to the
    kernel, so this keeps asking (bounded) rather than assuming a distribution.
    """
    seen: dict[object, list[str]] = {}
    deadline = time.monotonic() + timeout

    def one(_):
        resp = get(server, path)
        assert resp.status == 200, resp
        return resp

    with ThreadPoolExecutor(4) as pool:
        while len(seen) < want and time.monotonic() < deadline:
            for resp in pool.map(one, range(8)):
                seen.setdefault(key(resp), []).append(resp.text)
    assert len(seen) >= want, (
        f"only {sorted(seen)} answered {path} in {timeout}s, expected {want} distinct\n"
        f"--- stderr ---\n{server.stderr_text()}"
    )
    return seen


# --- fixtures ----------------------------------------------------------------------------


_TRACKED: list[OxgateProcess] = []


@pytest.fixture
def tracked():
    """For OxgateProcess objects a test builds itself (e.g. servers that must fail)."""
    started: list[OxgateProcess] = []
    yield started.append
    for server in started:
        reap(server)


def assert_one_error_line(result, code: int, *mentions: str) -> str:
    lines = error_lines(result.stderr)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1, f"expected one 'Error: ' line, got:\n{result.stderr}"
    for word in mentions:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    return lines[0]


# --- options and start-up ----------------------------------------------------------------


def test_help_lists_the_master_options():
    result = run_oxgate(["--help"])
    assert result.returncode == 0, result.stderr
    for flag in (
        "-w",
        "--workers",
        "--timeout",
        "--max-requests",
        "--max-requests-jitter",
        "--pid",
    ):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", result.stdout), flag


def test_master_binds_logs_its_own_pid_and_forks_the_workers(master):
    server = master("crashy", "--workers", "2")
    m = re.search(r"Listening at: \S+ \((\d+)\)", server.stderr_text())
    assert int(m.group(1)) == server.pid, "the Listening line names the master's pid"
    workers = wait_ready(server, 2)
    assert sorted(workers) == sorted(booted(server)), server.stderr_text()
    assert server.pid not in workers
    for pid in workers:
        assert parent_of(pid) == server.pid, f"worker {pid} is not a child of the master"
    # each worker says it boots before it says it is ready
    err = server.stderr_text()
    for pid in workers:
        assert err.index(f"Booting worker with pid: {pid}") < err.index(
            f"Worker ready (pid: {pid})"
        )
    assert live_children(server.pid) == sorted(workers)


def test_two_workers_answer_with_different_pids_and_wsgi_multiprocess(master):
    server = master("crashy", "-w", "2", "--threads", "2")
    workers = wait_ready(server, 2)
    seen = collect_pids(server, 2)
    assert seen == set(workers), (seen, workers)
    info = get_pid(server)
    assert info["multiprocess"] is True
    assert info["multithread"] is True


def test_one_worker_by_default_and_wsgi_multiprocess_is_false(master):
    server = master("crashy")
    (worker,) = wait_ready(server, 1)
    for _ in range(5):
        info = get_pid(server)
        assert info["pid"] == worker
        assert info["multiprocess"] is False
    assert live_children(server.pid) == [worker]
    assert booted(server) == [worker]


def test_web_concurrency_sets_the_default_number_of_workers(master):
    server = master("crashy", extra_env={"WEB_CONCURRENCY": "3"})
    workers = wait_ready(server, 3)
    assert poll(
        lambda: live_children(server.pid) == sorted(workers),
        5,
        lambda: f"children {live_children(server.pid)} == {sorted(workers)}",
        server,
    )
    assert get_pid(server)["multiprocess"] is True


def test_workers_flag_wins_over_web_concurrency():
    env = base_env({"WEB_CONCURRENCY": "3"})
    out = run_oxgate(["--print-config", "echo_env"], env=env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^\s*workers\s*[=:]\s*3\s*$", out.stdout, re.MULTILINE), out.stdout
    out = run_oxgate(["--print-config", "-w", "1", "echo_env"], env=env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^\s*workers\s*[=:]\s*1\s*$", out.stdout, re.MULTILINE), out.stdout


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--workers", "many"),
        ("--timeout", "soon"),
        ("--max-requests", "lots"),
        ("--max-requests-jitter", "some"),
    ],
)
def test_bad_master_option_values_exit_2_with_one_error_line(flag, value):
    result = run_oxgate(["--bind", "127.0.0.1:0", flag, value, "crashy"])
    assert_one_error_line(result, 2, flag.lstrip("-").split("-")[0])


def test_app_that_cannot_be_imported_exits_4_with_two_workers_without_respawning(tracked):
    server = OxgateProcess(
        ["--bind", "127.0.0.1:0", "--workers", "2", "import_error"], env=base_env(), ready=None
    )
    tracked(server)
    server.start()
    code = server.wait_exit(15)
    stderr = server.stderr_text()
    lines = error_lines(stderr)
    assert code == 4, stderr
    assert len(lines) == 1, f"expected one 'Error: ' line, got:\n{stderr}"
    assert "import_error" in lines[0], lines[0]
    assert "Traceback (most recent call last)" in stderr
    assert "RuntimeError: oxgate-test: broken at import time" in stderr
    assert "_configure" in stderr
    assert stderr.index("Traceback") < stderr.index(lines[0])
    leftover = [p for p in booted(server) if alive(p)]
    assert not leftover, f"workers {leftover} outlived the master"


def test_port_in_use_exits_3_with_workers():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_oxgate(["--bind", f"127.0.0.1:{port}", "-w", "2", "crashy"])
    assert_one_error_line(result, 3, str(port))
    assert "Booting worker" not in result.stderr


# --- crashes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "how,expected",
    [
        ("/exit?code=3", "exited with code 3"),
        ("/segv", "was killed by signal SIGSEGV"),
        ("SIGKILL", "was killed by signal SIGKILL"),
    ],
    ids=["os._exit(3)", "SIGSEGV", "SIGKILL-from-outside"],
)
def test_a_crashed_worker_is_logged_and_replaced_while_the_other_keeps_serving(
    master, events_file, how, expected
):
    server = master("crashy", "-w", "2")
    workers = wait_ready(server, 2)
    if how == "SIGKILL":
        victim = workers[0]
        started = time.monotonic()
        os.kill(victim, signal.SIGKILL)
    else:
        started = time.monotonic()
        with server.connect() as conn:
            conn.send(simple_request(target=how))
            path = how.split("?")[0]
            (victim,) = wait_started(events_file, path)
            # the client of the crashing request sees its connection end, not an answer
            with pytest.raises((IncompleteResponse, ConnectionError)):
                conn.read_response()
    (survivor,) = [p for p in workers if p != victim]
    line = wait_line(server, f"Worker (pid:{victim})", expected, timeout=REPLACE_TIMEOUT)
    (replacement,) = wait_ready(server, 1, exclude=workers, timeout=REPLACE_TIMEOUT)
    took = time.monotonic() - started
    assert took < 3.0, f"replacement took {took:.1f}s"
    err = server.stderr_text()
    assert err.index(line) < err.index(f"Booting worker with pid: {replacement}")
    assert not alive(victim)
    assert alive(survivor), "the other worker must not be touched"
    for _ in range(10):
        assert get_pid(server)["pid"] in (survivor, replacement)
    assert parent_of(replacement) == server.pid
    assert live_children(server.pid) == sorted([survivor, replacement])
    assert server.proc.poll() is None


# --- timeouts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "route,function,workers",
    [("/sleep", "_sleep_forever", "1"), ("/busy", "_spin_forever", "2")],
    ids=["time.sleep", "busy-loop"],
)
def test_a_request_past_the_timeout_is_logged_with_stacks_and_its_worker_replaced(
    master, events_file, route, function, workers
):
    timeout = 1
    server = master("crashy", "-w", workers, "--timeout", str(timeout))
    initial = wait_ready(server, int(workers))
    conn = server.connect(timeout=15)
    try:
        conn.send(simple_request(target=route))
        (stuck,) = wait_started(events_file, route)
        since = time.monotonic()
        line = wait_line(server, "timed out after", f"GET {route}", timeout=timeout + 5)
        found_after = time.monotonic() - since
        assert found_after < timeout + 3, f"timeout noticed after {found_after:.1f}s: {line}"
        # the stuck client is let go: its connection closes (or it gets a 5xx)
        try:
            resp = conn.read_response()
        except socket.timeout:
            pytest.fail(f"stuck client still waiting 15s later\n{server.stderr_text()}")
        except (IncompleteResponse, ConnectionError):
            resp = None
        assert resp is None or resp.status >= 500, resp
    finally:
        conn.close()
    stack_rx = re.compile(rf'File "[^"]*crashy\.py", line \d+ in {function}\b')
    stack = poll(
        lambda: stack_rx.search(server.stderr_text()),
        5,
        lambda: f"the stuck worker's Python stack ({stack_rx.pattern})",
        server,
    )
    (replacement,) = wait_ready(server, 1, exclude=initial, timeout=REPLACE_TIMEOUT)
    wait_dead([stuck], timeout=REPLACE_TIMEOUT, server=server)
    err = server.stderr_text()
    assert err.index(line) < stack.start(), "the stack follows the 'timed out' line"
    assert stack.start() < err.index(f"Booting worker with pid: {replacement}"), (
        "the stack is logged before the worker is replaced"
    )
    assert re.search(r"File \"", err[err.index(line) :])
    for _ in range(5):
        assert get_pid(server)["pid"] != stuck
    others = [p for p in initial if p != stuck]
    assert all(alive(p) for p in others), "only the stuck worker is killed"
    assert live_children(server.pid) == sorted([*others, replacement])


def test_timeout_spares_idle_workers_and_requests_shorter_than_it(master):
    server = master("crashy", "-w", "2", "--timeout", "1")
    workers = wait_ready(server, 2)
    assert get(server, "/sleep?s=0.5").text == "slept"
    # idle for longer than timeout + 2s: nothing may be killed
    deadline = time.monotonic() + 3.2
    while time.monotonic() < deadline:
        assert "timed out" not in server.stderr_text(), server.stderr_text()
        assert sorted(booted(server)) == sorted(workers), server.stderr_text()
        time.sleep(0.1)
    assert all(alive(p) for p in workers)
    assert collect_pids(server, 2) == set(workers)


def test_timeout_0_turns_the_worker_timeout_off(master):
    server = master("crashy", "--timeout", "0")
    workers = wait_ready(server, 1)
    assert get(server, "/sleep?s=2").text == "slept"
    assert "timed out" not in server.stderr_text()
    assert sorted(booted(server)) == sorted(workers)


# --- signals -----------------------------------------------------------------------------


def test_sigterm_lets_in_flight_requests_on_every_worker_finish_then_exits_0(master, events_file):
    server = master("crashy", "-w", "2", "--threads", "2", "--graceful-timeout", "10")
    workers = wait_ready(server, 2)
    results: list[object] = []

    def call():
        try:
            results.append(get(server, "/sleep?s=1.5", timeout=20).text)
        except Exception as e:  # asserted below
            results.append(repr(e))

    clients = [threading.Thread(target=call) for _ in range(2)]
    for c in clients:
        c.start()
    wait_started(events_file, "/sleep", n=2)
    server.proc.send_signal(signal.SIGTERM)
    for c in clients:
        c.join(20)
    assert results == ["slept", "slept"], server.stderr_text()
    assert server.wait_exit(15) == 0, server.stderr_text()
    wait_dead(workers, timeout=5)


def test_sigterm_stops_listening_at_once_while_in_flight_requests_finish(
    master, events_file, tmp_path
):
    # A proxy must see new connections refused during the drain (and try another
    # upstream), not queued in a backlog nobody accepts from and reset at exit.
    sock_path = tmp_path / "ox.sock"
    server = master(
        "crashy",
        "--bind",
        "127.0.0.1:0",
        "--bind",
        f"unix:{sock_path}",
        "--graceful-timeout",
        "10",
        # The app runs on its own thread, so the worker's I/O loop hears TERM at once.
        "--threads",
        "2",
    )
    wait_ready(server, 1)
    results: list[object] = []
    client = threading.Thread(target=lambda: results.append(get(server, "/sleep?s=3").text))
    client.start()
    wait_started(events_file, "/sleep", n=1)
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for_stderr(r"Shutting down: waiting for in-flight requests")

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        return False

    # The worker lets go of the socket just after it says it is shutting down.
    wait_until(refused, 2.0, "new connections refused")
    assert not sock_path.exists()
    assert client.is_alive(), "refused only once the in-flight request ended"
    client.join(20)
    assert results == ["slept"], server.stderr_text()
    assert server.wait_exit(15) == 0, server.stderr_text()


def test_connections_queued_while_a_worker_is_busy_are_served_after_sigterm(master, events_file):
    # One thread: a slow request holds the worker's loop, so connections made meanwhile
    # wait in the socket's queue. A stop must serve them, not reset them at exit.
    server = master("crashy", "--graceful-timeout", "10")
    wait_ready(server, 1)
    slow = threading.Thread(target=lambda: get(server, "/sleep?s=2"))
    slow.start()
    wait_started(events_file, "/sleep", n=1)
    queued = [server.connect() for _ in range(3)]
    try:
        for conn in queued:
            conn.send(simple_request("POST", "/", body=b"sent once"))
        server.proc.send_signal(signal.SIGTERM)
        for conn in queued:
            assert conn.read_response().status == 200, server.stderr_text()
    finally:
        for conn in queued:
            conn.close()
    slow.join(20)
    assert server.wait_exit(15) == 0, server.stderr_text()


def test_sigterm_while_workers_are_booting_stops_master_and_workers_promptly(tracked):
    """The stop must reach workers forked just before or during the signal."""
    outcomes = []
    for _ in range(20):
        server = OxgateProcess(["--bind", "127.0.0.1:0", "-w", "4", "crashy"], env=base_env())
        tracked(server)
        server.start()  # returns at `Listening at:`, before the workers are ready
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = "hung"
        reap(server)
        leftover = [p for p in booted(server) if alive(p)]
        outcomes.append((code, leftover))
        if code != 0:
            break
    assert all(o == (0, []) for o in outcomes), (
        f"(exit code, live workers) per run: {outcomes}\n--- last stderr ---\n"
        f"{server.stderr_text()}"
    )


def test_sigterm_waits_at_most_the_graceful_timeout_for_workers(master, events_file):
    server = master("crashy", "-w", "2", "--graceful-timeout", "1")
    workers = wait_ready(server, 2)
    conn = server.connect(timeout=15)
    try:
        conn.send(simple_request(target="/sleep?s=20"))
        wait_started(events_file, "/sleep")
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_exit(10) == 0, server.stderr_text()
        took = time.monotonic() - began
        assert took < 4, f"SIGTERM with --graceful-timeout 1 took {took:.1f}s"
        assert conn.wait_closed(5) == b"", "the cut-off request gets no response"
    finally:
        conn.close()
    wait_dead(workers, timeout=5)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["SIGINT", "SIGQUIT"])
def test_sigint_and_sigquit_stop_master_and_workers_fast(master, events_file, sig):
    server = master("crashy", "-w", "2", "--graceful-timeout", "30")
    workers = wait_ready(server, 2)
    conn = server.connect(timeout=15)
    try:
        conn.send(simple_request(target="/sleep?s=20"))
        wait_started(events_file, "/sleep")
        began = time.monotonic()
        server.proc.send_signal(sig)
        assert server.wait_exit(10) == 0, server.stderr_text()
        assert time.monotonic() - began < 5
    finally:
        conn.close()
    wait_dead(workers, timeout=5)


def _write_module(path: Path, version: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        "import os\n"
        "import time\n"
        f"VERSION = {version!r}\n\n\n"
        "def application(environ, start_response):\n"
        "    if environ.get('QUERY_STRING') == 'slow':\n"
        "        time.sleep(0.02)\n"
        "    body = ('%s %d' % (VERSION, os.getpid())).encode()\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain'),\n"
        "                              ('Content-Length', str(len(body)))])\n"
        "    return [body]\n"
    )
    os.replace(tmp, path)


def test_sighup_reloads_new_code_in_new_workers_without_failing_a_request(master, tmp_path):
    module = tmp_path / "reload_app.py"
    _write_module(module, "v1")
    server = master("--chdir", str(tmp_path), "-w", "2", "--threads", "2", "reload_app")
    old = wait_ready(server, 2)
    # every request takes a little while, so requests are in flight on the old workers
    # when they are told to stop
    loop = ClientLoop(server.port, "/?slow", clients=4).start()
    try:
        poll(lambda: loop.count() >= 40, 10, lambda: "40 responses before the reload", server)
        _write_module(module, "v2")
        server.proc.send_signal(signal.SIGHUP)
        new = wait_ready(server, 2, exclude=old, timeout=10)
        wait_dead(old, timeout=10, server=server)
        after = loop.count()
        poll(lambda: loop.count() >= after + 40, 10, lambda: "40 responses after", server)
    finally:
        loop.stop()
    assert loop.failures == [], (
        f"{len(loop.failures)} failed requests (of {loop.count()}; {loop.retries} retried "
        f"after an idle close): {loop.failures[:10]}\n--- stderr ---\n{server.stderr_text()}"
    )
    answers = [r.text.split() for r in loop.responses]
    by_pid: dict[int, set[str]] = {}
    for version, pid in answers:
        by_pid.setdefault(int(pid), set()).add(version)
    for pid in old:
        assert by_pid.get(pid, {"v1"}) == {"v1"}, (pid, by_pid)
    for pid in set(by_pid) - set(old):
        assert pid in new, f"{pid} answered but is neither an old nor a new worker"
        assert by_pid[pid] == {"v2"}, f"worker {pid} did not import the new code: {by_pid}"
    # every new worker serves the new code (fresh connections: the kernel picks the worker)
    fresh = collect_answers(server, "/", lambda resp: int(resp.text.split()[1]), 2)
    assert set(fresh) == set(new), (fresh, new)
    for pid, texts in fresh.items():
        assert {t.split()[0] for t in texts} == {"v2"}, (pid, texts)
    assert answers[-1][0] == "v2"
    assert server.proc.poll() is None
    assert live_children(server.pid) == sorted(new)


def test_sigttin_adds_a_worker_and_sigttou_removes_one_but_never_the_last(master):
    server = master("crashy")
    (first,) = wait_ready(server, 1)
    server.proc.send_signal(signal.SIGTTIN)
    (second,) = wait_ready(server, 1, exclude=[first], timeout=REPLACE_TIMEOUT)
    assert collect_pids(server, 2) == {first, second}
    assert live_children(server.pid) == sorted([first, second])

    server.proc.send_signal(signal.SIGTTOU)
    gone = poll(
        lambda: [p for p in (first, second) if not alive(p)],
        REPLACE_TIMEOUT,
        lambda: "one of the two workers to exit after SIGTTOU",
        server,
    )
    assert len(gone) == 1, gone
    (left,) = [p for p in (first, second) if p not in gone]
    for _ in range(10):
        assert get_pid(server)["pid"] == left

    server.proc.send_signal(signal.SIGTTOU)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # the last worker stays
        assert alive(left), server.stderr_text()
        assert get_pid(server)["pid"] == left
        time.sleep(0.05)
    assert booted(server) == [first, second], server.stderr_text()
    assert live_children(server.pid) == [left]


# --- recycling ---------------------------------------------------------------------------


def test_max_requests_recycles_workers_without_failing_a_request(master):
    n = 50
    server = master("crashy", "-w", "2", "--max-requests", str(n))
    wait_ready(server, 2)
    # The old worker serves until its replacement is ready (by design), so a client faster
    # than a worker boot would see no recycling at all: each request takes a few ms.
    loop = ClientLoop(server.port, "/pid?delay=0.003", clients=4, per_client=75).start()
    loop.join(40)
    assert loop.failures == [], (
        f"{len(loop.failures)} failed requests ({loop.retries} retried after an idle "
        f"close): {loop.failures[:10]}\n--- stderr ---\n{server.stderr_text()}"
    )
    assert loop.count() == 300
    served: dict[int, int] = {}
    for resp in loop.responses:
        info = resp.json()
        served[info["pid"]] = max(served.get(info["pid"], 0), info["count"])
    assert len(served) > 2, (
        f"not enough recycling: {served}\n--- stderr ---\n{server.stderr_text()}"
    )
    retired = {pid: c for pid, c in served.items() if not alive(pid)}
    assert retired, served
    for pid, count in retired.items():
        assert count >= n, f"worker {pid} was recycled after {count} < {n} requests"
    poll(
        lambda: len(live_children(server.pid)) == 2,
        REPLACE_TIMEOUT,
        lambda: f"two workers left, have {live_children(server.pid)}",
        server,
    )


def test_max_requests_jitter_with_one_worker_and_a_sequential_client(master):
    n, jitter = 10, 5
    server = master("crashy", "--max-requests", str(n), "--max-requests-jitter", str(jitter))
    wait_ready(server, 1)
    loop = ClientLoop(server.port, "/pid?delay=0.005", clients=1, per_client=80).start()
    loop.join(40)
    assert loop.failures == [], (
        f"{loop.failures[:10]} ({loop.retries} retried)\n--- stderr ---\n{server.stderr_text()}"
    )
    order: list[int] = []
    served: dict[int, int] = {}
    for resp in loop.responses:
        info = resp.json()
        if not order or order[-1] != info["pid"]:
            assert info["pid"] not in order, "a recycled worker answered again"
            order.append(info["pid"])
        served[info["pid"]] = info["count"]
    assert len(order) >= 3, f"workers seen: {served}\n--- stderr ---\n{server.stderr_text()}"
    for pid in order[:-1]:
        assert served[pid] >= n, f"worker {pid} recycled after {served[pid]} < {n}: {served}"
    poll(
        lambda: len(live_children(server.pid)) == 1,
        REPLACE_TIMEOUT,
        lambda: f"one worker left, have {live_children(server.pid)}",
        server,
    )


# --- pid file ----------------------------------------------------------------------------


def test_pid_file_holds_the_master_pid_and_is_removed_on_a_clean_stop(master, tmp_path):
    pidfile = tmp_path / "run" / "oxgate.pid"
    pidfile.parent.mkdir()
    server = master("crashy", "-w", "2", "--pid", str(pidfile))
    wait_ready(server, 2)
    assert pidfile.read_text().strip() == str(server.pid)
    assert server.stop(signal.SIGTERM) == 0, server.stderr_text()
    assert not pidfile.exists(), "the pid file is removed after a clean stop"
