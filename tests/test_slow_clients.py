"""Slow clients, idle connections and the timeouts that bound them: none of them
may hold a Python thread, and each timeout closes only what it names."""

from __future__ import annotations

import json
import select
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import open_fds, rss_kib, wait_ready
from support import (
    TESTS_DIR,
    read_events,
    run_oxgate,
    simple_request,
    wait_event,
    wait_until,
)

APP = "slow_clients_app"
CROWD = 1000


def tcp_peer_open(client_port: int) -> bool:
    """Whether the server side of our connection from `client_port` is still open
    (not yet closed by the server), from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        state = fields[3]
        # 01 ESTABLISHED, 08 CLOSE_WAIT: the server has not closed its socket.
        if remote_port == client_port and state in ("01", "08"):
            return True
    return False


def latencies(server, n: int) -> list[float]:
    """n requests on one keep-alive connection; seconds each."""
    out = []
    with server.connect() as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            t0 = time.perf_counter()
            resp = conn.request(simple_request("GET", "/"))
            out.append(time.perf_counter() - t0)
            assert resp.status == 200 and resp.body == b"ok"
    return out


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


class Crowd:
    """tests/slow_crowd.py in its own process: slowloris and idle connections."""

    def __init__(self, port: int, slow: int, idle: int):
        self.proc = subprocess.Popen(
            [sys.executable, str(TESTS_DIR / "slow_crowd.py"), str(port), str(slow), str(idle)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> Crowd:
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"the crowd did not connect: {err.strip()}")
        return self

    def stop(self) -> dict:
        out, _ = self.proc.communicate(input="stop\n", timeout=30)
        return json.loads(out.strip().splitlines()[-1])

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_slowloris_and_idle_crowds_hold_no_app_thread(oxgate, events_file):
    """1000 slowloris + 1000 idle keep-alive connections against one worker with ONE
    app thread: a normal client is still served at once, a slow upload and a slow
    reader of a buffered response do not hold the thread, and nobody is dropped
    before their timeouts."""
    server = oxgate(
        APP,
        "--threads", "1",
        "--worker-connections", "2500",
        "--header-timeout", "120",
        "--keep-alive", "120",
    )  # fmt: skip
    worker = wait_ready(server, 1)[0]
    latencies(server, 200)  # warm-up
    unloaded = latencies(server, 2000)
    fds_before, rss_before = open_fds(worker), rss_kib(worker)
    with Crowd(server.port, CROWD, CROWD) as crowd:
        wait_until(
            lambda: open_fds(worker) >= fds_before + 2 * CROWD - 4, 10, "the crowd's connections"
        )
        fds_crowd, rss_crowd = open_fds(worker), rss_kib(worker)
        # A slow upload (under --request-buffer) and a slow reader of a response
        # (under --response-buffer) join the crowd.
        upload = server.connect()
        upload.send(simple_request("POST", "/upload", [("Content-Length", "1000")]) + b"u" * 10)
        reader = server.connect()
        reader.send(simple_request("GET", "/stream?chunks=12&size=65536"))
        # The app thread finished the whole response though the reader reads nothing.
        wait_event(events_file, "close:stream")
        loaded = latencies(server, 2000)
        upload.send(b"u" * 990)
        assert upload.read_response().body == b"1000"
        body = reader.read_response().body
        assert len(body) == 12 * 65536
        upload.close()
        reader.close()
        dropped = crowd.stop()
    assert dropped == {"slowloris": 0, "idle": 0}, "the crowd was cut before its timeouts"
    assert "upload:1000" in read_events(events_file)
    per_conn = (rss_crowd - rss_before) * 1024 / (2 * CROWD)
    print(
        f"\nunloaded p99 {p99(unloaded) * 1e3:.3f} ms, with {CROWD} slowloris + {CROWD} idle:"
        f" p99 {p99(loaded) * 1e3:.3f} ms (median {statistics.median(loaded) * 1e3:.3f} ms);"
        f" fds {fds_before} -> {fds_crowd}; RSS {rss_before} -> {rss_crowd} KiB,"
        f" {per_conn:.0f} bytes per connection"
    )
    # Generous: a thread or a buffered 64 KiB per connection would be far above it.
    assert per_conn < 32 * 1024
    # Functional, not a speed target: a request queued behind a slow client would wait
    # for its 120 s timeout. The p99 ratio itself is measured in bench/slow_clients.py.
    assert max(loaded) < 2.0


def test_a_head_past_header_timeout_gets_408_and_is_closed(oxgate):
    server = oxgate(APP, "--header-timeout", "1")
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        data = conn.wait_closed(timeout=5)
    assert data.startswith(b"HTTP/1.1 408 "), data
    # A connection that sends nothing at all is closed without a word.
    with server.connect() as conn:
        assert conn.wait_closed(timeout=5) == b""


def test_header_timeout_counts_the_whole_head_not_each_byte(oxgate):
    """A drip of one byte every 0.3 s never stalls, but the head still runs out of time."""
    server = oxgate(APP, "--header-timeout", "1")
    with server.connect() as conn:
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Drip: " + b"a" * 40
        answered = False
        for byte in head:
            if select.select([conn.sock], [], [], 0.3)[0]:
                answered = True
                break
            conn.send(bytes([byte]))
        assert answered, "a dripping head was allowed past --header-timeout"
        assert conn.wait_closed(timeout=5).startswith(b"HTTP/1.1 408 ")


def test_keep_alive_idle_timeout_closes_between_requests_only(oxgate):
    server = oxgate(APP, "--keep-alive", "1", "--header-timeout", "5")
    with server.connect() as conn:
        assert conn.request(simple_request("GET", "/")).status == 200
        assert conn.wait_closed(timeout=5) == b"", "an idle connection got bytes"


def test_a_stalled_body_is_cut_after_body_timeout_and_the_app_is_not_called(oxgate, events_file):
    server = oxgate(APP, "--body-timeout", "1")
    with server.connect() as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"u" * 10)
        data = conn.wait_closed(timeout=6)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert not [e for e in read_events(events_file) if e.startswith("upload:")]
    assert latencies(server, 1)  # the worker goes on serving


def test_a_slow_body_that_keeps_moving_is_not_cut(oxgate, events_file):
    server = oxgate(APP, "--body-timeout", "1")
    with server.connect() as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
        for _ in range(8):
            assert not conn.is_closed_by_peer(timeout=0.4)
            conn.send(b"u")
        assert conn.read_response().body == b"8"


def test_a_client_that_stops_reading_is_cut_after_write_timeout(oxgate):
    server = oxgate(APP, "--write-timeout", "1")
    conn = server.connect()
    # 64 MiB: more than the socket buffers hold, never read.
    conn.send(simple_request("GET", "/stream?chunks=1024&size=65536"))
    try:
        assert tcp_peer_open(conn.local_port)
        wait_until(lambda: not tcp_peer_open(conn.local_port), 8, "the stalled connection to close")
        total = 0
        try:
            while chunk := conn.sock.recv(1 << 20):
                total += len(chunk)
        except ConnectionResetError:
            pass
        assert total < 1024 * 65536, "the whole response arrived: nothing stalled"
    finally:
        conn.close()
    assert latencies(server, 1)


def test_a_slow_reader_that_keeps_reading_gets_everything(oxgate):
    """--write-timeout bounds a stall, not the whole response: a reader that takes
    longer than it in all, but never stops, gets every byte."""
    server = oxgate(APP, "--write-timeout", "1")
    with server.connect() as conn:
        conn.send(simple_request("GET", "/stream?chunks=256&size=65536"))  # 16 MiB
        started = time.monotonic()
        tail, total = b"", 0
        while not tail.endswith(b"0\r\n\r\n"):
            chunk = conn.sock.recv(256 * 1024)
            assert chunk, f"cut after {total} bytes"
            total += len(chunk)
            tail = (tail + chunk)[-16:]
            time.sleep(0.025)
        elapsed = time.monotonic() - started
    assert total > 256 * 65536
    assert elapsed > 1.0, "the reader was not slower than --write-timeout: nothing was tested"


def test_a_large_body_to_a_client_that_does_not_read_holds_no_other_client(oxgate):
    """With one thread the app runs on the I/O thread; a body past --response-buffer
    that is already whole in memory is written by the connection after the call, so
    a client that does not read it holds only its own connection."""
    server = oxgate(APP, "--threads", "1", "--write-timeout", "20")
    stalled = server.connect()
    size = 32 * 1024 * 1024  # past --response-buffer and what the sockets hold
    stalled.send(simple_request("GET", f"/big?size={size}"))
    try:
        stalled.read_head()  # the app ran and its response started
        other = server.connect()
        other.send(simple_request("GET", "/"))
        ready, _, _ = select.select([other.sock], [], [], 10)
        assert ready, "a second client waited for the one that does not read"
        assert other.read_response().body == b"ok"
        other.close()
        assert tcp_peer_open(stalled.local_port)
        total = len(stalled.buf)
        while total < size:
            chunk = stalled.sock.recv(1 << 20)
            assert chunk, f"cut after {total} bytes"
            total += len(chunk)
        assert total == size
    finally:
        stalled.close()


def test_past_response_buffer_the_app_thread_waits_for_the_reader(oxgate, events_file):
    """The buffer is a bound: a larger streamed response holds the thread until read."""
    server = oxgate(APP, "--response-buffer", "65536")
    with server.connect() as conn:
        conn.send(simple_request("GET", "/stream?chunks=512&size=65536"))  # 32 MiB
        conn.read_head()
        time.sleep(0.5)  # the app fills the buffer and the sockets, then must wait
        assert "close:stream" not in read_events(events_file)
        tail, total = bytes(conn.buf), len(conn.buf)
        while not tail.endswith(b"0\r\n\r\n"):
            chunk = conn.sock.recv(1 << 20)
            assert chunk, f"cut after {total} bytes"
            total += len(chunk)
            tail = (tail + chunk)[-16:]
    assert total > 512 * 65536  # the data plus the chunk framing
    wait_event(events_file, "close:stream")


def test_an_app_thread_waiting_for_a_reader_lets_the_other_threads_run(oxgate):
    """A send that fits the buffer keeps the GIL; one that must wait for the client
    gives it up, or the other app threads could not run Python meanwhile."""
    server = oxgate(APP, "--threads", "2", "--response-buffer", "65536")
    stalled = server.connect()
    try:
        stalled.send(simple_request("GET", "/stream?chunks=512&size=65536"))  # 32 MiB
        stalled.read_head()
        time.sleep(0.5)  # the buffer and the sockets fill; its thread waits
        with server.connect() as other:
            other.send(simple_request("GET", "/"))
            ready, _, _ = select.select([other.sock], [], [], 10)
            assert ready, "the other app thread did not run while one waited for its client"
            assert other.read_response().body == b"ok"
    finally:
        stalled.close()


def test_a_whole_answer_larger_than_the_socket_takes_reaches_a_late_reader(oxgate):
    """An app thread writes what the socket takes at the end of its response; the
    I/O thread must be told to write the rest once the client reads, and the
    connection then serves its next request (a long keep-alive: the idle check
    after one would find the rest too, much later). The I/O thread, which wrote
    the end, logs it."""
    server = oxgate(APP, "--threads", "4", "--keep-alive", "60", "--access-logfile", "-")
    size = 32 << 20
    sock = socket.socket()
    # A small window, so the sockets cannot hold the whole answer.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    with sock:
        sock.sendall(simple_request("GET", f"/big?size={size}"))
        time.sleep(0.5)  # the sockets fill; the app thread is long done
        got = b""
        while b"\r\n\r\n" not in got:
            got += sock.recv(65536)
        head, body = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {size}".encode() in head
        n = len(body)
        while n < size:
            chunk = sock.recv(1 << 20)
            assert chunk, f"cut after {n} bytes"
            n += len(chunk)
        assert n == size
        server.wait_for_stdout(rf'"GET /big\?size={size} HTTP/1\.1" 200 {size} ', timeout=5)
        sock.sendall(simple_request("GET", "/"))
        assert sock.recv(65536).endswith(b"\r\n\r\nok")


def test_a_connection_idle_after_a_slow_answer_from_an_app_thread_still_times_out(oxgate):
    """Its task is not woken at the response's end; past a keep-alive period of
    waiting it must look for itself, or the connection would stay open for good."""
    server = oxgate(APP, "--threads", "4", "--keep-alive", "1")
    with server.connect() as conn:
        assert conn.request(simple_request("GET", "/sleep?s=1.5")).body == b"slept"
        answered = time.monotonic()
        assert conn.wait_closed(8) == b""
        assert time.monotonic() - answered < 5


def test_worker_connections_caps_a_worker_and_frees_idle_slots(oxgate):
    server = oxgate(APP, "--worker-connections", "2", "--keep-alive", "30")
    # Two connections in the middle of a head fill the worker.
    busy = [server.connect(), server.connect()]
    for c in busy:
        c.send(b"GET / HTTP/1.1\r\n")
    waiting = server.connect()
    waiting.send(simple_request("GET", "/"))
    assert not waiting.is_closed_by_peer(timeout=0.5)
    assert waiting.buf == b"", "a third connection was served past --worker-connections 2"
    busy[0].send(b"Host: x\r\n\r\n")
    assert busy[0].read_response().status == 200
    # busy[0] is now idle on keep-alive: the worker closes it to make room.
    assert waiting.read_response().status == 200
    assert busy[0].wait_closed(timeout=5) == b""
    for c in [*busy, waiting]:
        c.close()


def test_a_full_request_queue_answers_503_at_once_and_recovers(oxgate, events_file):
    server = oxgate(APP, "--threads", "1", "--request-queue", "2")
    # With one thread a fast app runs on the I/O thread itself; one slow
    # call sends the next ones through the queue, which is what is tested.
    first = server.connect()
    first.send(simple_request("GET", "/sleep?s=0.1"))
    assert first.read_response().status == 200
    first.close()
    Path(events_file).write_text("")
    conns = [server.connect() for _ in range(8)]
    for c in conns:
        c.send(simple_request("GET", "/sleep?s=0.5"))
    statuses = []
    pending = list(conns)
    while pending:
        ready, _, _ = select.select([c.sock for c in pending], [], [], 10)
        assert ready, f"no answer for {len(pending)} requests"
        for c in [c for c in pending if c.sock in ready]:
            resp = c.read_response()
            statuses.append(resp.status)
            if resp.status == 503:
                assert resp.header("Retry-After") == "1"
                assert resp.header("Connection") == "close"
                # Refused at once: before the first request could finish.
                assert "finished:sleep" not in read_events(events_file)
            pending.remove(c)
            c.close()
    served = statuses.count(200)
    assert 2 <= served <= 3, statuses
    assert statuses.count(503) == 8 - served, statuses
    assert latencies(server, 5)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--worker-connections", "0"), ("--header-timeout", "0"), ("--write-timeout", "x")],
)
def test_bad_timeout_and_cap_values_are_usage_errors(flag, value):
    result = run_oxgate([flag, value, APP])
    assert result.returncode == 2
    assert flag in result.stderr


def test_a_stalled_streamed_body_gets_408_while_the_app_reads_and_no_error(oxgate, events_file):
    """A body larger than --request-buffer streams into the running app; when it
    stalls, the client gets 408 and the app's failed read is not logged as its fault."""
    server = oxgate(APP, "--body-timeout", "1", "--request-buffer", "1024")
    with server.connect() as conn:
        conn.send(simple_request("POST", "/upload", [("Content-Length", "100000")]) + b"u" * 5000)
        data = conn.wait_closed(timeout=6)
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert not [e for e in read_events(events_file) if e.startswith("upload:")]
    assert latencies(server, 1)
    assert "[ERROR]" not in server.stderr_text(), server.stderr_text()
