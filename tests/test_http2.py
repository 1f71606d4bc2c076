"""HTTP/2 (--http, --http2-max-concurrent-streams) as clients and apps see it: real
oxgate processes, driven by real clients (httpx with http2=True, curl --http2 over TLS
and --http2-prior-knowledge on plain TCP) and by tests/h2_client.py's raw frames where
a test must see or send exactly one thing. The framing rules, limits and timeouts are
in test_http2_frames.py.

The app is tests/apps/h2_app.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from h2_app import pattern
from h2_client import (
    CANCEL,
    H2,
    INTERNAL_ERROR,
    MIB,
    NO_ERROR,
    PREFACE,
    SETTINGS_MAX_CONCURRENT_STREAMS,
)
from hyperframe.frame import (
    DataFrame,
    RstStreamFrame,
    SettingsFrame,
)
from support import (
    IO_TIMEOUT,
    RawConnection,
    error_lines,
    read_events,
    run_oxgate,
    simple_request,
    wait_event,
    wait_until,
)

APP = "h2_app"


# ---------------------------------------------------------------------------------------
# Certificates and clients
# ---------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_file: Path
    cert: Path
    key: Path

    def args(self, *extra: str) -> list[str]:
        return [APP, "--certfile", str(self.cert), "--keyfile", str(self.key), *extra]

    def context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return Pki(ca_file, cert, key)


def https(server, path: str = "/") -> str:
    return f"https://localhost:{server.port}{path}"


def h2_client(pki: Pki) -> httpx.Client:
    return httpx.Client(http2=True, verify=pki.context(), timeout=IO_TIMEOUT)


def h2c_client() -> httpx.Client:
    """httpx with HTTP/2 only: on http:// URLs that is prior knowledge (h2c)."""
    return httpx.Client(http1=False, http2=True, timeout=IO_TIMEOUT)


def alpn_selected(port: int, ctx: ssl.SSLContext) -> str | None:
    """The protocol the server picks from the context's ALPN list; fails the handshake
    (ssl.SSLError) when it picks none."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            return sock.selected_alpn_protocol()


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def http1_get(server, target: str = "/") -> bytes:
    """An HTTP/1.1 GET on a plain connection; everything the server sent until it closed."""
    with RawConnection(("127.0.0.1", server.port)) as conn:
        conn.send(simple_request(target=target, headers=[("Connection", "close")]))
        return conn.wait_closed()


# ---------------------------------------------------------------------------------------
# Turning it on: --http auto|1|2, ALPN, h2c prior knowledge
# ---------------------------------------------------------------------------------------


def test_httpx_over_tls_negotiates_h2_and_the_app_sees_http2(oxgate, pki):
    server = oxgate(*pki.args())
    with h2_client(pki) as c:
        resp = c.get(https(server, "/env?x=1&y=caf%C3%A9"))
        hello = c.get(https(server, "/"))
    assert resp.http_version == "HTTP/2", resp.http_version
    assert resp.status_code == 200
    env = resp.json()
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/env"
    assert env["QUERY_STRING"] == "x=1&y=caf%C3%A9"
    assert env["RAW_URI"] == "/env?x=1&y=caf%C3%A9"
    assert env["HTTP_HOST"] == f"localhost:{server.port}"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("localhost", str(server.port))
    assert hello.http_version == "HTTP/2" and hello.text == "hello"
    assert hello.headers["server"].lower().startswith("oxgate")
    assert "date" in hello.headers


def test_alpn_offers_h2_and_http_1_1_by_default(oxgate, pki):
    server = oxgate(*pki.args())
    assert alpn_selected(server.port, pki.context(["h2", "http/1.1"])) == "h2"
    assert alpn_selected(server.port, pki.context(["http/1.1", "h2"])) == "h2"
    assert alpn_selected(server.port, pki.context(["http/1.1"])) == "http/1.1"
    # httpx without http2 offers http/1.1 alone: HTTP/1.1, as before.
    with httpx.Client(verify=pki.context(), timeout=IO_TIMEOUT) as c:
        resp = c.get(https(server, "/env"))
    assert resp.http_version == "HTTP/1.1"
    assert resp.json()["SERVER_PROTOCOL"] == "HTTP/1.1"
    # A client that sends no ALPN at all gets HTTP/1.1 too.
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as raw:
        with pki.context().wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.selected_alpn_protocol() is None
            sock.sendall(simple_request(headers=[("Connection", "close")]))
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello"), answer[:200]


def test_curl_http2_over_tls_gets_http_2(oxgate, pki):
    server = oxgate(*pki.args())
    out = curl("--http2", "--cacert", str(pki.ca_file), "-w", " %{http_version}", https(server))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello 2"


def test_curl_prior_knowledge_on_plain_tcp_gets_h2c(oxgate):
    server = oxgate(APP)
    out = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", server.url + "/env")
    assert out.returncode == 0, out.stderr
    body, version = out.stdout.rsplit("\n", 1)
    assert version == "2"
    env = json.loads(body)
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"


def test_upgrade_h2c_is_answered_over_http_1_1(oxgate):
    server = oxgate(APP)
    # curl --http2 on http:// asks for the upgrade; the answer stays HTTP/1.1.
    out = curl("--http2", "-w", "\n%{http_version}", server.url + "/env")
    assert out.returncode == 0, out.stderr
    body, version = out.stdout.rsplit("\n", 1)
    assert version == "1.1"
    assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/1.1"
    with server.connect() as conn:
        resp = conn.request(
            simple_request(
                target="/env",
                headers=[
                    ("Connection", "Upgrade, HTTP2-Settings"),
                    ("Upgrade", "h2c"),
                    ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
                ],
            )
        )
        assert (resp.version, resp.status) == ("HTTP/1.1", 200), resp
        assert resp.json()["SERVER_PROTOCOL"] == "HTTP/1.1"
        # The connection is still HTTP/1.1 for the next request.
        assert conn.request(simple_request()).body == b"hello"


def test_plain_connection_serves_http_1_1_and_h2c_side_by_side(oxgate):
    server = oxgate(APP)
    assert server.listening == [f"http://127.0.0.1:{server.port}"]
    with server.connect() as conn:
        assert conn.request(simple_request(target="/env")).json()["SERVER_PROTOCOL"] == "HTTP/1.1"
    with H2.tcp(server.port) as c:
        c.start()
        env = c.get("/env").json()
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    with h2c_client() as c:
        resp = c.get(server.url + "/")
    assert (resp.http_version, resp.text) == ("HTTP/2", "hello")


def test_unix_socket_serves_h2c_with_prior_knowledge(oxgate, tmp_path: Path):
    sock = tmp_path / "h2.sock"
    server = oxgate(APP, "--bind", f"unix:{sock}")
    with H2.unix(sock) as c:
        c.start()
        stream = c.get("/env", authority="example.test")
    assert stream.status == 200
    env = stream.json()
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["HTTP_HOST"] == "example.test"
    assert env["wsgi.url_scheme"] == "http"
    with RawConnection(str(sock), family=socket.AF_UNIX) as conn:
        assert conn.request(simple_request()).body == b"hello"
    assert server.proc.poll() is None


def test_http_1_offers_only_http_1_1_and_refuses_the_preface(oxgate, pki):
    server = oxgate(*pki.args("--http", "1"))
    assert alpn_selected(server.port, pki.context(["h2", "http/1.1"])) == "http/1.1"
    # Only h2 offered: no protocol in common, a no_application_protocol alert
    # (RFC 7301 section 3.2).
    with pytest.raises(ssl.SSLError):
        alpn_selected(server.port, pki.context(["h2"]))
    plain = oxgate(APP, "--http", "1")
    with RawConnection(("127.0.0.1", plain.port)) as conn:
        conn.send(PREFACE + SettingsFrame(0).serialize())
        answer = conn.wait_closed()
    assert re.match(rb"^HTTP/1\.[01] (400|505) ", answer), answer[:200]
    out = curl("--http2-prior-knowledge", plain.url + "/")
    assert out.returncode != 0 or out.stdout != "hello"
    assert http1_get(plain).endswith(b"hello")


def test_http_2_only_refuses_http_1_1_clients(oxgate, pki):
    server = oxgate(*pki.args("--http", "2"))
    assert alpn_selected(server.port, pki.context(["h2", "http/1.1"])) == "h2"
    with pytest.raises(ssl.SSLError):
        alpn_selected(server.port, pki.context(["http/1.1"]))
    with h2_client(pki) as c:
        assert c.get(https(server)).http_version == "HTTP/2"
    out = curl("--http1.1", "--cacert", str(pki.ca_file), https(server))
    assert out.returncode != 0 and "hello" not in out.stdout

    plain = oxgate(APP, "--http", "2")
    answer = http1_get(plain)
    assert b"HTTP/1" not in answer and b"hello" not in answer, answer[:200]
    with H2.tcp(plain.port) as c:
        c.start()
        assert bytes(c.get("/").data) == b"hello"


def test_http_setting_from_the_config_file_and_bad_values(oxgate, tmp_path: Path):
    conf = tmp_path / "oxgate.conf.py"
    conf.write_text('http = "2"\n')
    server = oxgate("-c", str(conf), APP)
    answer = http1_get(server)
    assert b"HTTP/1" not in answer and b"hello" not in answer, answer[:200]
    with H2.tcp(server.port) as c:
        c.start()
        assert c.get("/").status == 200
    result = run_oxgate(["--bind", "127.0.0.1:0", "--http", "3", APP])
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "--http" in lines[0], result.stderr
    result = run_oxgate(["--bind", "127.0.0.1:0", "--http2-max-concurrent-streams", "x", APP])
    assert result.returncode == 2, result.stderr


def test_uwsgi_listener_is_unaffected_by_http_2(oxgate):
    server = oxgate("--bind", "uwsgi:127.0.0.1:0", "--http", "2", APP)
    port = int(server.listening[0].rsplit(":", 1)[1])
    variables = [
        ("REQUEST_METHOD", "GET"),
        ("PATH_INFO", "/"),
        ("QUERY_STRING", ""),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_NAME", "example.com"),
        ("SERVER_PORT", "80"),
        ("REMOTE_ADDR", "203.0.113.7"),
        ("HTTP_HOST", "example.com"),
    ]
    data = b""
    for key, value in variables:
        for s in (key.encode(), value.encode()):
            data += struct.pack("<H", len(s)) + s
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(struct.pack("<BHB", 0, len(data), 0) + data)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    assert raw.endswith(b"hello")


# ---------------------------------------------------------------------------------------
# The WSGI environ over HTTP/2
# ---------------------------------------------------------------------------------------


def test_environ_over_h2c_comes_from_the_pseudo_headers(oxgate):
    server = oxgate(APP)
    with H2.tcp(server.port) as c:
        c.start()
        stream = c.get(
            "/env/a%20b/c?q=1&r=%2F",
            method="GET",
            authority="example.test:8443",
            headers=[
                ("x-custom", "v1"),
                ("user-agent", "h2-test"),
                ("x-forwarded-for", "203.0.113.9"),
            ],
        )
    assert stream.status == 200
    env = stream.json()
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/env/a b/c"
    assert env["QUERY_STRING"] == "q=1&r=%2F"
    assert env["RAW_URI"] == "/env/a%20b/c?q=1&r=%2F"
    assert env["HTTP_HOST"] == "example.test:8443"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.test", "8443")
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_CUSTOM"] == "v1"
    assert env["HTTP_USER_AGENT"] == "h2-test"
    # The peer (127.0.0.1) is in --forwarded-allow-ips by default.
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["SCRIPT_NAME"] == ""
    # No pseudo-header leaks into the environ.
    assert not [k for k in env if ":" in k], sorted(env)


def test_cookie_fields_are_joined_with_semicolons(oxgate):
    server = oxgate(APP)
    with H2.tcp(server.port) as c:
        c.start()
        env = c.get(
            "/env", headers=[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3; d=4")]
        ).json()
    # RFC 9113 section 8.2.3: one field, joined with "; ".
    assert env["HTTP_COOKIE"] == "a=1; b=2; c=3; d=4"


def test_content_length_is_present_only_when_the_client_sent_it(oxgate):
    server = oxgate(APP)
    body = b"field=value&other=" + b"x" * 5000
    with H2.tcp(server.port) as c:
        c.start()
        with_length = c.response(
            c.request("/env", "POST", body=body, headers=[("content-length", str(len(body)))])
        ).json()
        without = c.response(c.request("/env", "POST", body=body)).json()
        # A body bigger than --request-buffer, no length: wsgi.input reads to the end.
        big = pattern(300_000)
        streamed = c.response(c.request("/echo?chunk=7000", "POST", body=big))
    assert with_length["CONTENT_LENGTH"] == str(len(body))
    assert with_length["_body"] == body.decode()
    assert "CONTENT_LENGTH" not in without, without.get("CONTENT_LENGTH")
    assert without["_body"] == body.decode()
    assert streamed.status == 200 and bytes(streamed.data) == big


def test_host_header_disagreeing_with_authority_is_400(oxgate, events_file):
    server = oxgate(APP)
    with H2.tcp(server.port) as c:
        c.start()
        bad = c.get("/slow?ms=0&id=host", authority="a.example", headers=[("host", "b.example")])
        same = c.get("/env", authority="a.example", headers=[("host", "a.example")])
        # Without :authority, Host gives HTTP_HOST (RFC 9113 section 8.3.1).
        only_host = c.get("/env", authority=None, headers=[("host", "h.example")])
    assert bad.status == 400, bad
    assert "slow:start:host" not in read_events(events_file)
    assert same.status == 200 and same.json()["HTTP_HOST"] == "a.example"
    assert only_host.status == 200 and only_host.json()["HTTP_HOST"] == "h.example"


def test_post_bodies_of_every_size_are_echoed_over_tls(oxgate, pki):
    server = oxgate(*pki.args())
    with h2_client(pki) as c:
        for size in (0, 1, 65_536, 65_537, 3 * MIB + 17):
            body = os.urandom(size)
            resp = c.post(https(server, "/echo"), content=body)
            assert resp.http_version == "HTTP/2"
            assert resp.status_code == 200, size
            assert hashlib.sha256(resp.content).digest() == hashlib.sha256(body).digest(), size
        # A body without a length (a generator): streamed, read to the end.
        resp = c.post(https(server, "/echo"), content=iter([b"a" * 100_000, b"b" * 100_000]))
    assert resp.content == b"a" * 100_000 + b"b" * 100_000


# ---------------------------------------------------------------------------------------
# Request bodies: flow control and limits
# ---------------------------------------------------------------------------------------


def test_small_body_is_read_before_the_app_is_called(oxgate, events_file):
    server = oxgate(APP, "--threads", "2")
    with H2.tcp(server.port) as c:
        c.start()
        sized = c.headers_frame(
            "/slow?ms=0&id=sized", "POST", [("content-length", "100")], end_stream=False
        )
        unsized = c.headers_frame("/slow?ms=0&id=unsized", "POST", end_stream=False)
        c.send(sized, DataFrame(sized.stream_id, data=b"x" * 50))
        c.send(unsized, DataFrame(unsized.stream_id, data=b"y" * 50))
        # A later stream is answered: the server has read the frames before it.
        assert c.get("/").status == 200
        # Observing an absence: give a wrong server time to call the app.
        time.sleep(0.5)
        assert not [e for e in read_events(events_file) if e.startswith("slow:start")]
        c.send(
            DataFrame(sized.stream_id, data=b"x" * 50, flags=["END_STREAM"]),
            DataFrame(unsized.stream_id, data=b"y" * 50, flags=["END_STREAM"]),
        )
        assert c.response(sized.stream_id).json() == {"id": "sized"}
        assert c.response(unsized.stream_id).json() == {"id": "unsized"}


def test_app_that_never_reads_the_body_stalls_the_uploader(oxgate, events_file):
    server = oxgate(APP)
    total = 32 * MIB
    with H2.tcp(server.port) as c:
        c.start()
        frame = c.headers_frame(
            "/noread?ms=4000", "POST", end_stream=False,
            headers=[("content-length", str(total))],
        )  # fmt: skip
        c.send(frame)
        sid = frame.stream_id
        wait_event(events_file, "noread:start")
        sent = c.send_body(sid, b"\0" * total, stall=1.5)
        print(f"\nthe uploader stalled after {sent} bytes")
        # The server grants window only as the app reads: the stream window (1 MiB)
        # plus a few 64 KiB pieces in flight, never the whole body.
        assert sent < 1 * MIB + 8 * 65536, sent
        assert "noread:end" not in read_events(events_file)
        # Other streams of the connection are served meanwhile.
        assert c.get("/").status == 200
        stream = c.response(sid, timeout=15)
    assert stream.status == 200 and bytes(stream.data) == b"ignored"
    assert sent < total


def test_slow_reader_gets_the_whole_body_as_it_reads(oxgate):
    server = oxgate(APP, "--request-buffer", "65536")
    body = pattern(5 * MIB + 3)
    with H2.tcp(server.port) as c:
        c.start()
        sid = c.request("/echo?chunk=4096", "POST", body=body)
        stream = c.response(sid, timeout=30)
    assert stream.status == 200
    assert hashlib.sha256(stream.data).digest() == hashlib.sha256(body).digest()


def test_limit_request_body_gives_413(oxgate, events_file):
    server = oxgate(APP, "--limit-request-body", "1000")
    with H2.tcp(server.port) as c:
        c.start()
        frame = c.headers_frame(
            "/slow?ms=0&id=declared", "POST", [("content-length", "5000")], end_stream=False
        )
        c.send(frame)
        # Answered from the declared length alone: no body byte was sent.
        declared = c.response(frame.stream_id)
        unsized = c.response(c.request("/slow?ms=0&id=unsized", "POST", body=b"x" * 5000))
        fits = c.response(
            c.request("/echo", "POST", body=b"y" * 1000, headers=[("content-length", "1000")])
        )
    assert declared.status == 413, declared
    assert unsized.status == 413, unsized
    events = read_events(events_file)
    assert "slow:start:declared" not in events and "slow:start:unsized" not in events
    assert fits.status == 200 and bytes(fits.data) == b"y" * 1000


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


def test_file_wrapper_and_static_files_over_h2(oxgate, pki, tmp_path: Path):
    root = tmp_path / "static"
    root.mkdir()
    data = pattern(700_001)
    (root / "blob.bin").write_bytes(data)
    server = oxgate(*pki.args("--static-map", f"/static={root}"))
    size = 3 * MIB + 17
    with h2_client(pki) as c:
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


def test_big_streaming_response_arrives_whole(oxgate, pki):
    server = oxgate(*pki.args())
    with h2_client(pki) as c:
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


def test_httpx_concurrent_requests_share_one_h2_connection(oxgate, pki):
    server = oxgate(*pki.args("--threads", "4"))
    results: list[httpx.Response] = []
    errors: list[BaseException] = []
    with h2_client(pki) as c:
        c.get(https(server, "/"))

        def one(i: int) -> None:
            try:
                results.append(c.get(https(server, f"/env?i={i}")))
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert len(results) == 12
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


def test_django_over_h2_renders_posts_with_csrf_and_knows_it_is_secure(oxgate, django_site, pki):
    server = oxgate(
        "--chdir", str(django_site), "mysite.wsgi", "--threads", "2",
        "--certfile", str(pki.cert), "--keyfile", str(pki.key),
        pythonpath=False,
    )  # fmt: skip
    base = https(server, "")
    with httpx.Client(
        http2=True, verify=pki.context(), timeout=IO_TIMEOUT, base_url=base
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
