"""HTTP/2 responses as clients and apps see them: headers, HEAD, files, flow control
toward a client that stops reading, errors and resets, concurrency and overload, logs,
graceful stop, and Django. Real oxgate processes driven by httpx, curl and
tests/h2_client.py's raw frames; the app is tests/apps/h2_app.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
from h2_app import pattern
from h2_client import (
    CANCEL,
    H2,
    INTERNAL_ERROR,
    MIB,
    NO_ERROR,
    SETTINGS_MAX_CONCURRENT_STREAMS,
)
from h2_support import (
    APP,
    h2_client,
    h2c_client,
    https,
)
from hyperframe.frame import (
    RstStreamFrame,
)
from support import (
    IO_TIMEOUT,
    read_events,
    wait_event,
    wait_until,
)

# ---------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------


def test_connection_specific_headers_are_dropped_and_names_lowercased(oxgate):
    server = oxgate(APP)
    with H2.tcp(server.port) as c:
        c.start()
        stream = c.get("/headers")
        # The connection survives the response (no protocol error from the server's side).
        assert c.get("/").status == 200
    assert stream.status == 200 and bytes(stream.data) == b"headers"
    names = [k for k, _ in stream.headers]
    assert all(k == k.lower() for k in names), names
    assert stream.header("x-mixed-case") == "Kept"
    for hop in ("connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"):
        assert hop not in names, stream.headers
    assert stream.header("server") and stream.header("date"), stream.headers


def test_head_gets_the_headers_and_no_body(oxgate):
    server = oxgate(APP)
    with H2.tcp(server.port) as c:
        c.start()
        head = c.get("/sized", method="HEAD")
        get = c.get("/sized")
    assert head.status == 200 and head.ended
    assert head.header("content-length") == "1000"
    assert bytes(head.data) == b""
    assert bytes(get.data) == b"s" * 1000


def test_head_to_a_streaming_app_runs_the_iterable_to_its_end(oxgate, events_file):
    # As over HTTP/1.1: what the app yields after its head is dropped, not refused,
    # so the app does not see a disconnect.
    server = oxgate(APP)
    with H2.tcp(server.port) as c:
        c.start()
        head = c.get("/closing?n=5&ms=1&tag=hd", method="HEAD")
        assert head.status == 200 and head.ended and bytes(head.data) == b""
    events = wait_event(events_file, "closed:hd", timeout=5)
    assert [e for e in events if e.startswith("yield:hd:")] == [f"yield:hd:{i}" for i in range(5)]


def test_file_wrapper_and_static_files_over_h2(oxgate, h2_pki, tmp_path: Path):
    root = tmp_path / "static"
    root.mkdir()
    data = pattern(700_001)
    (root / "blob.bin").write_bytes(data)
    server = oxgate(*h2_pki.args("--static-map", f"/static={root}"))
    size = 3 * MIB + 17
    with h2_client(h2_pki) as c:
        wrapped = c.get(https(server, f"/file?size={size}"))
        whole = c.get(https(server, "/static/blob.bin"))
        part = c.get(https(server, "/static/blob.bin"), headers={"Range": "bytes=100000-100099"})
    assert wrapped.http_version == whole.http_version == "HTTP/2"
    assert wrapped.status_code == 200 and wrapped.content == pattern(size)
    assert whole.status_code == 200 and whole.content == data
    assert part.status_code == 206 and part.content == data[100000:100100]
    assert part.headers["content-range"] == f"bytes 100000-100099/{len(data)}"
    # h2c too: sendfile cannot frame HTTP/2, the bytes must still be right.
    with h2c_client() as c:
        plain = oxgate(APP, "--static-map", f"/static={root}")
        assert c.get(plain.url + "/static/blob.bin").content == data
        assert c.get(plain.url + f"/file?size={size}").content == pattern(size)


def test_big_streaming_response_arrives_whole(oxgate, h2_pki):
    server = oxgate(*h2_pki.args())
    with h2_client(h2_pki) as c:
        resp = c.get(https(server, "/stream?n=128&size=65536"))
    assert resp.http_version == "HTTP/2" and resp.status_code == 200
    assert resp.content == pattern(65536) * 128


def test_client_that_does_not_read_holds_the_app_at_the_response_buffer(oxgate, tmp_path):
    progress = tmp_path / "progress"
    server = oxgate(
        APP, "--response-buffer", "262144",
        extra_env={"OXGATE_TEST_PROGRESS": str(progress)},
    )  # fmt: skip
    n, size = 256, 65536  # 16 MiB

    def handed_over() -> int:
        try:
            return int(progress.read_text() or 0)
        except (OSError, ValueError):
            return 0

    with H2.tcp(server.port, auto_window=False) as c:
        c.start()
        sid = c.request(f"/stream?n={n}&size={size}")
        stream = c.streams[sid]
        c.read_until(lambda: stream.status == 200, what="the response head")
        # Wait until the app stops making progress (it must, within seconds).
        last, still_since = -1, time.monotonic()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            now = handed_over()
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since > 1.5:
                break
            c.read_until(lambda: False, 0.1, fail=False)
        stalled_at = handed_over()
        print(f"\nthe app stalled after handing over {stalled_at} bytes")
        # The client window (64 KiB) + --response-buffer + a few chunks, not 16 MiB.
        assert stalled_at <= 65535 + 262144 + 6 * size, stalled_at
        assert len(stream.data) <= 65535
        # Opening the window lets the rest through, intact.
        c.auto_window = True
        c.give_window(sid, len(stream.data) or 1)
        c.read_until(lambda: stream.done, 60, "the whole body")
    assert stream.ended and stream.reset is None
    assert len(stream.data) == n * size
    assert bytes(stream.data) == pattern(size) * n
    assert handed_over() == n * size


def test_app_failing_before_start_response_gives_500_on_its_stream(oxgate):
    server = oxgate(APP)
    with H2.tcp(server.port) as c:
        c.start()
        failed = c.get("/fail-early")
        assert c.get("/").status == 200
    assert failed.status == 500 and failed.ended


def test_app_failing_midway_resets_only_its_stream(oxgate):
    server = oxgate(APP, "--threads", "2")
    with H2.tcp(server.port) as c:
        c.start()
        good = c.request("/stream?n=32&size=65536")
        bad = c.request("/fail-midway?n=4")
        c.read_until(lambda: c.streams[good].done and c.streams[bad].done, 20, "both streams")
        failing, ok = c.streams[bad], c.streams[good]
        assert failing.status == 200
        assert failing.reset == INTERNAL_ERROR, c.summary()
        assert not failing.ended
        assert len(failing.data) <= 4 * 16384
        assert ok.ended and ok.reset is None and bytes(ok.data) == pattern(65536) * 32
        assert not c.goaways
        assert c.get("/").status == 200
    assert "failed midway" in server.stderr_text()


def test_client_reset_stops_the_iteration_and_close_is_called(oxgate, events_file):
    server = oxgate(APP, "--threads", "2")
    with H2.tcp(server.port) as c:
        c.start()
        sid = c.request("/closing?n=200&ms=50&tag=it")
        other = c.request("/stream?n=8&size=65536")
        c.read_until(lambda: len(c.streams[sid].data) >= 2048, what="two chunks")
        c.send(RstStreamFrame(sid, error_code=CANCEL))
        wait_event(events_file, "closed:it", timeout=5)
        yields = [e for e in read_events(events_file) if e.startswith("yield:it:")]
        assert len(yields) < 200, yields[-1]
        # Other streams of the connection are unaffected.
        assert bytes(c.response(other).data) == pattern(65536) * 8
        assert c.get("/").status == 200
        assert not c.goaways


def test_a_stream_reset_while_queued_never_reaches_the_app(oxgate, events_file):
    # RFC 9113 rapid reset: a request the client cancelled before an app thread was
    # free costs no app call.
    server = oxgate(APP, "--threads", "1")
    with H2.tcp(server.port) as c:
        c.start()
        busy = c.request("/slow?ms=700&id=busy")
        wait_event(events_file, "slow:start:busy")
        cancelled = [c.request(f"/slow?ms=0&id=gone{i}") for i in range(5)]
        for sid in cancelled:
            c.send(RstStreamFrame(sid, error_code=CANCEL))
        assert c.response(busy).json() == {"id": "busy"}
        assert c.get("/slow?ms=0&id=after").json() == {"id": "after"}
    events = read_events(events_file)
    assert "slow:start:after" in events
    assert not [e for e in events if e.startswith("slow:start:gone")], events


def test_client_reset_makes_the_next_write_fail_and_close_is_called(oxgate, events_file):
    server = oxgate(APP)
    with H2.tcp(server.port) as c:
        c.start()
        sid = c.request("/write?n=200&ms=50&tag=wr")
        c.read_until(lambda: len(c.streams[sid].data) >= 2048, what="two writes")
        c.send(RstStreamFrame(sid, error_code=CANCEL))
        events = wait_event(events_file, "closed:wr", timeout=8)
        assert any(e.startswith("write-failed:wr:") for e in events), events
        writes = [e for e in events if e.startswith("write:wr:")]
        assert len(writes) < 200
        assert c.get("/").status == 200


# ---------------------------------------------------------------------------------------
# Concurrency and overload
# ---------------------------------------------------------------------------------------


def test_many_concurrent_streams_on_one_connection(oxgate):
    server = oxgate(APP, "--threads", "4")
    n = 40
    with H2.tcp(server.port) as c:
        c.start()
        started = time.monotonic()
        ids = {c.request(f"/slow?ms=200&id={i}"): str(i) for i in range(n)}
        c.read_until(lambda: all(c.streams[s].done for s in ids), 30, f"{n} streams")
        elapsed = time.monotonic() - started
    for sid, i in ids.items():
        assert c.streams[sid].status == 200, (sid, c.streams[sid])
        assert c.streams[sid].json() == {"id": i}
    # 40 x 200 ms on 4 threads is 2 s; one at a time would be 8 s.
    assert elapsed < 5, elapsed


def test_httpx_concurrent_requests_share_one_h2_connection(oxgate, h2_pki):
    # httpx's async client: its sync one, shared between threads, races on the next
    # stream id (two threads may take the same one), which fails the client, not us.
    server = oxgate(*h2_pki.args("--threads", "4"))

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(http2=True, verify=h2_pki.context(), timeout=IO_TIMEOUT) as c:
            await c.get(https(server, "/"))
            return await asyncio.gather(*(c.get(https(server, f"/env?i={i}")) for i in range(12)))

    results = asyncio.run(run())
    assert [r.status_code for r in results] == [200] * 12
    assert [r.json()["QUERY_STRING"] for r in results] == [f"i={i}" for i in range(12)]
    ports = {r.json()["REMOTE_PORT"] for r in results}
    assert len(ports) == 1, ports
    assert all(r.http_version == "HTTP/2" for r in results)


def test_full_app_queue_gives_503_on_the_stream_and_the_connection_stays(oxgate):
    # One connection may not open more streams than the queue holds (2 here), so
    # it takes six connections to overflow the worker.
    server = oxgate(APP, "--threads", "1", "--request-queue", "2")
    conns = [H2.tcp(server.port) for _ in range(6)]
    try:
        for c in conns:
            assert c.start().get(SETTINGS_MAX_CONCURRENT_STREAMS) == 2
        ids = [(c, c.request(f"/slow?ms=300&id={i}")) for c in conns for i in range(2)]
        for c in conns:
            c.read_until(lambda c=c: all(c.streams[s].done for d, s in ids if d is c), 20)
        statuses = [c.streams[s].status for c, s in ids]
        refused = [c.streams[s] for c, s in ids if c.streams[s].status == 503]
        assert refused, statuses
        assert all(s.header("retry-after") == "1" for s in refused)
        assert 1 <= statuses.count(200) <= 4, statuses
        assert statuses.count(200) + len(refused) == 12, statuses
        for c in conns:
            assert not c.goaways
        assert conns[0].get("/slow?ms=0&id=after").json() == {"id": "after"}
    finally:
        for c in conns:
            c.close()


# ---------------------------------------------------------------------------------------
# Logs and request ids
# ---------------------------------------------------------------------------------------


def test_access_log_says_http_2(oxgate):
    server = oxgate(APP, "--access-logfile", "-", "--access-log-format", "%(H)s|%(r)s|%(s)s")
    with H2.tcp(server.port) as c:
        c.start()
        assert c.get("/logged?a=1").status == 200
    m = server.wait_for_stdout(r"^(.*)\|(.*/logged.*)\|(\d+)$")
    assert m.group(1) == "HTTP/2", m.group(0)
    assert m.group(2) == "GET /logged?a=1 HTTP/2", m.group(0)
    assert m.group(3) == "200"


def test_json_log_and_request_id_over_h2(oxgate):
    server = oxgate(APP, "--access-logfile", "-", "--access-log-format", "json", "--request-id")
    with H2.tcp(server.port) as c:
        c.start()
        fresh = c.get("/env?j=1")
        given = c.get("/env?j=2", headers=[("x-request-id", "client-id-42")])
    rid = fresh.header("x-request-id")
    assert rid and re.fullmatch(r"[0-9a-f]{32}", rid), fresh.headers
    assert fresh.json()["HTTP_X_REQUEST_ID"] == rid
    assert given.header("x-request-id") == "client-id-42"
    wait_until(lambda: len(server.stdout_text().splitlines()) >= 2, IO_TIMEOUT, "two log lines")
    lines = [json.loads(line) for line in server.stdout_text().splitlines()]
    first = next(e for e in lines if e["query"] == "j=1")
    assert first["protocol"] == "HTTP/2"
    assert first["request_id"] == rid
    assert first["path"] == "/env" and first["status"] == 200


# ---------------------------------------------------------------------------------------
# Graceful stop (idle and preface timeouts: test_http2_frames.py)
# ---------------------------------------------------------------------------------------


def test_sigterm_sends_goaway_and_in_flight_streams_complete(oxgate, events_file):
    server = oxgate(APP, "--threads", "2", "--graceful-timeout", "15")
    with H2.tcp(server.port) as c:
        c.start()
        first = c.request("/slow?ms=1500&id=a")
        second = c.request("/slow?ms=1500&id=b")
        wait_event(events_file, "slow:start:a")
        wait_event(events_file, "slow:start:b")
        os.kill(server.pid, signal.SIGTERM)
        c.read_until(lambda: c.goaways, 5, "GOAWAY after SIGTERM")
        c.read_until(lambda: c.streams[first].done and c.streams[second].done, 10, "streams")
        assert c.streams[first].json() == {"id": "a"}
        assert c.streams[second].json() == {"id": "b"}
        c.wait_closed(timeout=10)
    assert all(g.error_code == NO_ERROR for g in c.goaways), c.summary()
    # The last GOAWAY names the last stream the server took (RFC 9113 section 6.8).
    assert c.goaways[-1].last_stream_id == second, c.summary()
    assert server.wait_exit() == 0


def test_sigterm_never_loses_the_response_of_a_lone_stream(oxgate, events_file):
    # The race to catch: the app returns, the worker sees no stream in flight and
    # closes before the response is written. Several rounds, so a race shows.
    for round_ in range(4):
        server = oxgate(APP, "--threads", "2", "--graceful-timeout", "15")
        with H2.tcp(server.port) as c:
            c.start()
            sid = c.request(f"/slow?ms=800&id=r{round_}")
            wait_event(events_file, f"slow:start:r{round_}")
            os.kill(server.pid, signal.SIGTERM)
            c.read_until(lambda: c.eof, 10, fail=False)
            stream = c.streams[sid]
            assert stream.status == 200 and stream.ended, (round_, c.summary())
            assert stream.json() == {"id": f"r{round_}"}
            assert c.goaways and c.goaways[-1].last_stream_id == sid, c.summary()
        assert server.wait_exit() == 0


# ---------------------------------------------------------------------------------------
# Django
# ---------------------------------------------------------------------------------------


def _csrf_token(html: str) -> str:
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def test_django_over_h2_renders_posts_with_csrf_and_knows_it_is_secure(oxgate, django_site, h2_pki):
    server = oxgate(
        "--chdir", str(django_site), "mysite.wsgi", "--threads", "2",
        "--certfile", str(h2_pki.cert), "--keyfile", str(h2_pki.key),
        pythonpath=False,
    )  # fmt: skip
    base = https(server, "")
    with httpx.Client(
        http2=True, verify=h2_pki.context(), timeout=IO_TIMEOUT, base_url=base
    ) as client:
        page = client.get("/")
        assert page.http_version == "HTTP/2" and page.status_code == 200
        assert "<h1>Guestbook</h1>" in page.text
        token = _csrf_token(page.text)
        posted = client.post(
            "/",
            data={"csrfmiddlewaretoken": token, "name": "H2", "message": "over HTTP/2"},
            headers={"Referer": base + "/"},
        )
        assert posted.status_code == 302, posted.text[:500]
        entries = client.get("/api/entries").json()["entries"]
        info = client.get("/api/info?x=caf%C3%A9").json()
    assert any(e["name"] == "H2" and e["message"] == "over HTTP/2" for e in entries)
    assert info["secure"] is True
    assert info["absolute_uri"] == f"https://localhost:{server.port}/"
    assert info["query"] == {"x": "caf\u00e9"}


def test_a_stuck_stream_gets_504_at_timeout_and_its_neighbour_is_answered(oxgate):
    # crashy's /sleep never answers; /sleep?s=1.5 answers before --timeout.
    server = oxgate("crashy", "--threads", "3", "--timeout", "3", "--graceful-timeout", "2")
    with H2.tcp(server.port) as c:
        c.start()
        started = time.monotonic()
        stuck, slow = c.request("/sleep"), c.request("/sleep?s=1.5")
        answered = c.response(slow, timeout=20)
        slow_took = time.monotonic() - started
        timed_out = c.response(stuck, timeout=20)
        stuck_took = time.monotonic() - started
    assert answered.status == 200 and bytes(answered.data) == b"slept"
    assert 1.4 <= slow_took < 2.8, slow_took
    assert timed_out.status == 504 and 2.8 <= stuck_took < 5, stuck_took
    # Logged once the 504 is on its way: wait for it rather than race it.
    server.wait_for_stderr(r"GET /sleep got no response within 3s", timeout=5)
