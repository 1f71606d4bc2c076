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
import shutil
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from h2_app import pattern
from h2_client import (
    H2,
    MIB,
    PREFACE,
)
from h2_support import (
    APP,
    alpn_selected,
    curl,
    h2_client,
    h2c_client,
    http1_get,
    https,
)
from hyperframe.frame import (
    DataFrame,
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
)

# ---------------------------------------------------------------------------------------
# Turning it on: --http auto|1|2, ALPN, h2c prior knowledge
# ---------------------------------------------------------------------------------------


def test_httpx_over_tls_negotiates_h2_and_the_app_sees_http2(oxgate, h2_pki):
    server = oxgate(*h2_pki.args())
    with h2_client(h2_pki) as c:
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


def test_alpn_offers_h2_and_http_1_1_by_default(oxgate, h2_pki):
    server = oxgate(*h2_pki.args())
    assert alpn_selected(server.port, h2_pki.context(["h2", "http/1.1"])) == "h2"
    assert alpn_selected(server.port, h2_pki.context(["http/1.1", "h2"])) == "h2"
    assert alpn_selected(server.port, h2_pki.context(["http/1.1"])) == "http/1.1"
    # httpx without http2 offers http/1.1 alone: HTTP/1.1, as before.
    with httpx.Client(verify=h2_pki.context(), timeout=IO_TIMEOUT) as c:
        resp = c.get(https(server, "/env"))
    assert resp.http_version == "HTTP/1.1"
    assert resp.json()["SERVER_PROTOCOL"] == "HTTP/1.1"
    # A client that sends no ALPN at all gets HTTP/1.1 too.
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as raw:
        with h2_pki.context().wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.selected_alpn_protocol() is None
            sock.sendall(simple_request(headers=[("Connection", "close")]))
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello"), answer[:200]


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_headless_chromium_speaks_h2_to_a_tls_port(oxgate, h2_pki, tmp_path: Path):
    server = oxgate(*h2_pki.args())
    done = subprocess.run(
        [
            str(shutil.which("chromium")),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            # The test CA is not in Chromium's store; ALPN is negotiated all the same.
            "--ignore-certificate-errors",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            f"https://127.0.0.1:{server.port}/env",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"SERVER_PROTOCOL": "HTTP/2"' in done.stdout, done.stdout[-2000:]
    assert '"wsgi.url_scheme": "https"' in done.stdout


def test_curl_http2_over_tls_gets_http_2(oxgate, h2_pki):
    server = oxgate(*h2_pki.args())
    out = curl("--http2", "--cacert", str(h2_pki.ca_file), "-w", " %{http_version}", https(server))
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


def test_http_1_offers_only_http_1_1_and_refuses_the_preface(oxgate, h2_pki):
    server = oxgate(*h2_pki.args("--http", "1"))
    assert alpn_selected(server.port, h2_pki.context(["h2", "http/1.1"])) == "http/1.1"
    # Only h2 offered: no protocol in common, a no_application_protocol alert
    # (RFC 7301 section 3.2).
    with pytest.raises(ssl.SSLError):
        alpn_selected(server.port, h2_pki.context(["h2"]))
    plain = oxgate(APP, "--http", "1")
    with RawConnection(("127.0.0.1", plain.port)) as conn:
        conn.send(PREFACE + SettingsFrame(0).serialize())
        answer = conn.wait_closed()
    assert re.match(rb"^HTTP/1\.[01] (400|505) ", answer), answer[:200]
    out = curl("--http2-prior-knowledge", plain.url + "/")
    assert out.returncode != 0 or out.stdout != "hello"
    assert http1_get(plain).endswith(b"hello")


def test_http_2_only_refuses_http_1_1_clients(oxgate, h2_pki):
    server = oxgate(*h2_pki.args("--http", "2"))
    assert alpn_selected(server.port, h2_pki.context(["h2", "http/1.1"])) == "h2"
    with pytest.raises(ssl.SSLError):
        alpn_selected(server.port, h2_pki.context(["http/1.1"]))
    with h2_client(h2_pki) as c:
        assert c.get(https(server)).http_version == "HTTP/2"
    out = curl("--http1.1", "--cacert", str(h2_pki.ca_file), https(server))
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


def test_post_bodies_of_every_size_are_echoed_over_tls(oxgate, h2_pki):
    server = oxgate(*h2_pki.args())
    with h2_client(h2_pki) as c:
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
