"""`--bind uwsgi:ADDRESS`: the uwsgi protocol, as nginx's uwsgi_pass speaks it,
driven here by a raw-socket client that sends the packets nginx would send."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from support import (
    IO_TIMEOUT,
    RawConnection,
    RawResponse,
    error_lines,
    run_oxgate,
    simple_request,
)

# What nginx's uwsgi_params sends for `GET /path?q=1` over plain HTTP/1.1.
NGINX_VARS = [
    ("QUERY_STRING", "q=1"),
    ("REQUEST_METHOD", "GET"),
    ("CONTENT_TYPE", ""),
    ("CONTENT_LENGTH", ""),
    ("REQUEST_URI", "/path?q=1"),
    ("PATH_INFO", "/path"),
    ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REQUEST_SCHEME", "http"),
    ("REMOTE_ADDR", "203.0.113.77"),
    ("REMOTE_PORT", "51000"),
    ("SERVER_PORT", "80"),
    ("SERVER_NAME", "example.com"),
    ("HTTP_HOST", "example.com"),
    ("HTTP_USER_AGENT", "curl/8"),
    ("HTTP_ACCEPT", "*/*"),
]


def packet(variables: list[tuple[str, str]], modifier1: int = 0) -> bytes:
    data = b""
    for key, value in variables:
        for s in (key.encode("latin-1"), value.encode("latin-1")):
            data += struct.pack("<H", len(s)) + s
    return struct.pack("<BHB", modifier1, len(data), 0) + data


def with_vars(**changes: str) -> list[tuple[str, str]]:
    out = [(k, changes.pop(k, v)) for k, v in NGINX_VARS]
    return out + list(changes.items())


def uwsgi_port(server, index: int = 0) -> int:
    url = server.listening[index]
    assert url.startswith("uwsgi://"), url
    return int(url.rsplit(":", 1)[1])


def exchange(server, data: bytes, index: int = 0) -> tuple[RawResponse, bytes]:
    """Send one packet (and body); read the response and everything up to EOF."""
    port = uwsgi_port(server, index)
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(data)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, reason = lines[0].split(" ", 2)
    headers = [(k, v) for k, v in (h.split(": ", 1) for h in lines[1:])]
    resp = RawResponse(version, int(status), reason, headers)
    resp.body = body
    return resp, raw


@pytest.fixture
def uwsgi(oxgate):
    return oxgate("--bind", "uwsgi:127.0.0.1:0", "echo_env")


def test_listening_line_names_the_uwsgi_listener(uwsgi):
    assert uwsgi.listening[0].startswith("uwsgi://127.0.0.1:"), uwsgi.listening


def test_nginx_variables_reach_the_environ_as_under_uwsgi(uwsgi):
    resp, _ = exchange(uwsgi, packet(NGINX_VARS))
    assert resp.status == 200
    env = resp.json()
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/path"
    assert env["QUERY_STRING"] == "q=1"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.77", "51000")
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.com", "80")
    assert env["DOCUMENT_ROOT"] == "/usr/share/nginx/html"
    assert env["HTTP_HOST"] == "example.com"
    assert env["HTTP_USER_AGENT"] == "curl/8"
    assert env["wsgi.url_scheme"] == "http"
    # Empty CONTENT_* from nginx mean none (PEP 3333: may be absent).
    assert env.get("CONTENT_LENGTH", "") == ""


def test_https_from_nginx_makes_the_scheme_https(uwsgi):
    resp, _ = exchange(uwsgi, packet(with_vars(HTTPS="on", REQUEST_SCHEME="https")))
    assert resp.json()["wsgi.url_scheme"] == "https"


def test_post_body_after_the_packet_is_the_input(uwsgi):
    body = b"x" * 70000 + b"end"
    variables = with_vars(
        REQUEST_METHOD="POST", CONTENT_LENGTH=str(len(body)), CONTENT_TYPE="text/plain"
    )
    resp, _ = exchange(uwsgi, packet(variables) + body)
    env = resp.json()
    assert env["_body"] == body.decode()
    assert env["CONTENT_LENGTH"] == str(len(body))
    assert env["CONTENT_TYPE"] == "text/plain"


def test_one_request_per_connection_and_no_chunked_framing(oxgate):
    server = oxgate("--bind", "uwsgi:127.0.0.1:0", "wsgi_responses")
    variables = with_vars(REQUEST_URI="/generator", PATH_INFO="/generator")
    resp, raw = exchange(server, packet(variables))
    assert resp.status == 200, raw[:300]
    # nginx's uwsgi module reads the body to the connection's end: no chunks.
    assert resp.header("transfer-encoding") is None, raw[:300]
    assert resp.body == b"one,two,three", raw[:300]


def test_a_packet_arriving_byte_by_byte_is_read_whole(uwsgi):
    data = packet(NGINX_VARS)
    port = uwsgi_port(uwsgi)
    with RawConnection(("127.0.0.1", port)) as conn:
        for i in range(len(data)):
            conn.send(data[i : i + 1])
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.json()["REMOTE_ADDR"] == "203.0.113.77"


def test_variables_cannot_replace_the_servers_objects(uwsgi):
    resp, _ = exchange(uwsgi, packet(with_vars(**{"wsgi.input": "x", "lower_case": "y"})))
    env = resp.json()
    assert env["_types"]["wsgi.input"] != "str"
    assert "lower_case" not in env


def test_hop_by_hop_client_headers_do_not_change_framing(uwsgi):
    # nginx passes every client header; a chunked upload was already read whole.
    body = b"hello"
    variables = with_vars(
        REQUEST_METHOD="POST",
        CONTENT_LENGTH="5",
        HTTP_TRANSFER_ENCODING="chunked",
        HTTP_CONNECTION="keep-alive",
        HTTP_EXPECT="100-continue",
    )
    resp, raw = exchange(uwsgi, packet(variables) + body)
    assert resp.status == 200, raw[:300]
    assert resp.json()["_body"] == "hello"


@pytest.mark.parametrize(
    "data",
    [
        packet(NGINX_VARS, modifier1=5),
        packet(with_vars(HTTP_X_EVIL="a\r\nX-Injected: 1")),
        packet(with_vars(REQUEST_URI="/a b")),
        packet(with_vars(REQUEST_METHOD="GET /x")),
        packet(with_vars(CONTENT_LENGTH="-1")),
        b"\x00\x05\x00\x00\x01\x00A\x09\x00",
    ],
    ids=["modifier", "crlf-in-value", "space-in-uri", "bad-method", "bad-length", "truncated"],
)
def test_malformed_packets_are_a_400(uwsgi, data):
    resp, raw = exchange(uwsgi, data)
    assert resp.status == 400, raw[:300]


def test_a_stalled_packet_times_out(oxgate):
    server = oxgate("--bind", "uwsgi:127.0.0.1:0", "echo_env", "--header-timeout", "1")
    port = uwsgi_port(server)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(packet(NGINX_VARS)[:10])
        raw = sock.recv(4096)
    assert raw.startswith(b"HTTP/1.1 408"), raw
    assert time.monotonic() - started < IO_TIMEOUT


def test_http_and_uwsgi_listeners_side_by_side(oxgate):
    server = oxgate("--bind", "127.0.0.1:0", "--bind", "uwsgi:127.0.0.1:0", "echo_env")
    assert len(server.listening) == 2
    with server.connect() as conn:
        env = conn.request(simple_request(target="/plain")).json()
    assert env["PATH_INFO"] == "/plain"
    resp, _ = exchange(server, packet(NGINX_VARS), index=1)
    assert resp.json()["REMOTE_ADDR"] == "203.0.113.77"


def test_uwsgi_over_a_unix_socket(oxgate, tmp_path):
    sock_path = tmp_path / "u.sock"
    server = oxgate("--bind", f"uwsgi:unix:{sock_path}", "echo_env", bind=False)
    assert server.listening == [f"uwsgi:unix:{sock_path}"], server.listening
    with RawConnection(str(sock_path), family=socket.AF_UNIX) as conn:
        conn.send(packet(NGINX_VARS))
        resp = conn.read_response()
    assert resp.json()["REMOTE_ADDR"] == "203.0.113.77"


def test_bad_uwsgi_bind_exits_2():
    result = run_oxgate(["--bind", "uwsgi:uwsgi:1.2.3.4:9", "echo_env"])
    assert result.returncode == 2, result.stderr
    assert "given twice" in error_lines(result.stderr)[0]
