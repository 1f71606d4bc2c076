"""--threads N: an app thread is called in only when the busy ones wait on I/O (or
compute for long), so a fast app runs on one thread and I/O-bound views still get
every thread at once; responses handed over in batches arrive whole."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from processes import wait_ready
from support import simple_request, wait_event

APP = "pool_app"


def test_an_io_bound_view_gets_every_thread_at_once(oxgate):
    server = oxgate(APP, "--threads", "4")
    results: list[tuple[int, str]] = []

    def call() -> None:
        r = httpx.get(server.url + "/barrier", timeout=20)
        results.append((r.status_code, r.text))

    clients = [threading.Thread(target=call) for _ in range(4)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(30)
    # Each waited in the barrier with the GIL released, on a thread of its own.
    assert sorted(s for s, _ in results) == [200] * 4
    assert len({name for _, name in results}) == 4


def test_a_fast_app_under_load_runs_on_one_thread(oxgate):
    server = oxgate(APP, "--threads", "4")
    names: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=20) as c:
            for _ in range(150):
                name = c.get("/thread").text
                with lock:
                    names[name] += 1

    clients = [threading.Thread(target=client) for _ in range(8)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(60)
    assert sum(names.values()) == 8 * 150
    # Waking a thread per request spreads them over all four; one thread that keeps
    # taking from the queue serves nearly all (another may be called in if the busy
    # one is descheduled while blocked).
    _, most = names.most_common(1)[0]
    assert most >= 0.9 * 8 * 150, names


def test_a_long_computing_call_shares_the_gil_with_the_requests_behind_it(oxgate, events_file):
    server = oxgate(APP, "--threads", "2")
    spin = threading.Thread(
        target=lambda: httpx.get(server.url + "/spin?ms=3000", timeout=20), daemon=True
    )
    spin.start()
    wait_event(events_file, "started:/spin")
    started = time.monotonic()
    fast = httpx.get(server.url + "/thread", timeout=20)
    took = time.monotonic() - started
    spin.join(20)
    assert fast.status_code == 200
    # Not behind the whole 3 s call: a second thread is called in after a slice and
    # the two take turns on the GIL.
    assert took < 1.5, f"the fast request waited {took:.2f}s behind a computing one"


def test_many_responses_from_a_pool_arrive_whole_and_in_order(oxgate):
    server = oxgate(APP, "--threads", "4")
    conn = server.connect()
    try:
        # Pipelined: the worker answers them in order, whatever batches they went in.
        conn.send(b"".join(b"GET /thread?i=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(50)))
        for i in range(50):
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.body.endswith(b" %d" % i)
    finally:
        conn.close()


def _policy_becomes(pid: int, policy: int, load: Callable[[], None], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        load()
        if os.sched_getscheduler(pid) == policy:
            return True
    return False


@pytest.mark.parametrize("threads", ["4", "1"])
def test_the_io_thread_yields_to_busy_app_threads_only_while_requests_pile_up(oxgate, threads: str):
    # A worker's main thread is its I/O thread. While requests keep arriving as the app
    # works, it runs SCHED_BATCH: an arriving request waits for the app thread's slice
    # instead of preempting it. Requests one at a time get the default policy back, so
    # the I/O thread answers each at once. With one thread, a request whose body streams
    # (past --request-buffer) always goes to the app thread: such requests pile up the
    # same way. (Calls too slow to run inline, over 5 ms, cannot arrive fast enough.)
    streamed = threads == "1"
    pool = oxgate(APP, "--threads", threads, *(["--request-buffer", "0"] if streamed else []))
    pid = wait_ready(pool, 1)[0]
    assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    stop = threading.Event()

    def spinner() -> None:
        with httpx.Client(base_url=pool.url, timeout=20) as c:
            while not stop.is_set():
                if streamed:
                    c.post("/spin?ms=2", content=b"x" * 100)
                else:
                    c.get("/spin?ms=2")

    clients = [threading.Thread(target=spinner) for _ in range(8)]
    for c in clients:
        c.start()
    try:
        piled_up = _policy_becomes(pid, os.SCHED_BATCH, lambda: time.sleep(0.01), 10)
    finally:
        stop.set()
        for c in clients:
            c.join(30)
    assert piled_up, "the I/O thread kept preempting a busy app thread"
    with httpx.Client(base_url=pool.url, timeout=20) as c:
        one_at_a_time = _policy_becomes(pid, os.SCHED_OTHER, lambda: c.get("/thread"), 10)
    assert one_at_a_time, "the I/O thread stayed SCHED_BATCH without load"


def test_an_app_threads_answer_is_logged_while_its_connection_stays_open(oxgate):
    """Without an access log an app thread writes its response on the socket itself
    and the I/O thread learns of the end only when it has something to do; with one,
    the line is due at the end, not at the client's next request or the end of its
    keep-alive."""
    server = oxgate(APP, "--threads", "4", "--keep-alive", "60", "--access-logfile", "-")
    with server.connect() as conn:
        assert conn.request(simple_request(target="/logged-open")).status == 200
        server.wait_for_stdout(r'"GET /logged-open HTTP/1\.1" 200', timeout=5)
        # The connection still serves.
        assert conn.request(simple_request(target="/again")).status == 200


def test_a_stop_closes_a_kept_alive_connection_an_app_thread_answered(oxgate):
    """Its task was not woken at the response's end: the stop must reach it anyway,
    rather than the worker waiting out --graceful-timeout."""
    server = oxgate(APP, "--threads", "4", "--keep-alive", "60", "--graceful-timeout", "30")
    with server.connect() as conn:
        assert conn.request(simple_request(target="/before-stop")).status == 200
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert conn.wait_closed(10) == b""
        assert server.wait_exit(10) == 0
        assert time.monotonic() - started < 10
