"""HTTP/1.1 behaviour seen on the wire: keep-alive, pipelining, framing, limits, refusals."""

from __future__ import annotations

import email.utils
import socket
import time
from datetime import datetime, timezone

import pytest
from support import app_calls, simple_request

# With one thread a fast app runs on the I/O thread; with more, an app
# thread writes each response itself: both ways must keep HTTP/1.1's rules.
THREADS = pytest.mark.parametrize("threads", ["1", "4"], ids=["inline", "app-thread"])


@pytest.fixture(params=["1", "4"], ids=["inline", "app-thread"])
def counter(oxgate, request):
    return oxgate("counter", "--threads", request.param)


@pytest.fixture(params=["1", "4"], ids=["inline", "app-thread"])
def echo(oxgate, request):
    return oxgate("echo_env", "--threads", request.param)


# --- connection management --------------------------------------------------------------


def test_http11_keep_alive_serves_several_requests_on_one_connection(echo):
    with echo.connect() as conn:
        ports = []
        for i in range(3):
            resp = conn.request(simple_request(target=f"/ka/{i}"))
            assert resp.status == 200
            assert resp.json()["PATH_INFO"] == f"/ka/{i}"
            ports.append(resp.json()["REMOTE_PORT"])
            assert (resp.header("Connection") or "").lower() != "close"
        assert len(set(ports)) == 1
        assert not conn.is_closed_by_peer(0.3)


def test_pipelined_requests_are_answered_in_order(echo):
    with echo.connect() as conn:
        conn.send(
            simple_request(target="/p/1")
            + simple_request("POST", "/p/2", body=b"second body")
            + simple_request(target="/p/3")
        )
        first, second, third = (conn.read_response() for _ in range(3))
    assert [r.json()["PATH_INFO"] for r in (first, second, third)] == ["/p/1", "/p/2", "/p/3"]
    assert second.json()["_body"] == "second body"
    assert first.json()["_body"] == third.json()["_body"] == ""


def test_pipelined_requests_sent_byte_by_byte_are_all_answered(echo):
    data = simple_request(target="/b/1") + simple_request("POST", "/b/2", body=b"xyz")
    with echo.connect() as conn:
        for i in range(len(data)):
            conn.send(data[i : i + 1])
        first, second = conn.read_response(), conn.read_response()
    assert first.json()["PATH_INFO"] == "/b/1"
    assert second.json()["_body"] == "xyz"


def test_http10_request_without_keep_alive_gets_response_then_close(echo):
    with echo.connect() as conn:
        resp = conn.request(simple_request(version="HTTP/1.0", host=None))
        assert resp.status == 200
        assert resp.version in ("HTTP/1.0", "HTTP/1.1")
        assert resp.json()["SERVER_PROTOCOL"] == "HTTP/1.0"
        assert conn.wait_closed(5) == b""


def test_http10_request_with_keep_alive_keeps_connection_open(echo):
    req = simple_request(version="HTTP/1.0", headers=[("Connection", "keep-alive")])
    with echo.connect() as conn:
        first = conn.request(req)
        assert first.status == 200
        assert (first.header("Connection") or "").lower() == "keep-alive"
        second = conn.request(req)
        assert second.status == 200
        assert first.json()["REMOTE_PORT"] == second.json()["REMOTE_PORT"]


def test_http11_connection_close_request_closes_after_response(echo):
    with echo.connect() as conn:
        resp = conn.request(simple_request(headers=[("Connection", "close")]))
        assert resp.status == 200
        assert (resp.header("Connection") or "").lower() == "close"
        assert conn.wait_closed(5) == b""


@THREADS
def test_idle_keep_alive_connection_is_closed_after_keep_alive_seconds(oxgate, threads):
    server = oxgate("echo_env", "--keep-alive", "1", "--threads", threads)
    with server.connect() as conn:
        assert conn.request(simple_request()).status == 200
        started = time.monotonic()
        assert conn.wait_closed(8) == b""
        assert time.monotonic() - started < 6


# --- request bodies ----------------------------------------------------------------------


def test_chunked_request_body_with_trailers_is_dechunked_and_trailers_not_passed(echo):
    body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: secret\r\nX-Other: 2\r\n\r\n"
    req = simple_request("POST", "/chunked", headers=[("Transfer-Encoding", "chunked")])
    with echo.connect() as conn:
        conn.send(req + body + simple_request(target="/after"))
        resp = conn.read_response()
        after = conn.read_response()
    env = resp.json()
    assert resp.status == 200
    assert env["_body"] == "hello, world"
    assert "HTTP_X_TRAILER" not in env and "HTTP_X_OTHER" not in env
    assert after.json()["PATH_INFO"] == "/after"


def test_expect_100_continue_is_sent_when_app_reads_input_then_final_response(oxgate):
    server = oxgate("input_app")
    head = simple_request(
        "POST",
        "/?op=read",
        headers=[("Content-Length", "11"), ("Expect", "100-continue")],
    )
    with server.connect() as conn:
        conn.send(head)
        interim = conn.read_response(allow_informational=True)
        assert interim.status == 100, interim
        conn.send(b"hello world")
        final = conn.read_response()
    assert final.status == 200
    assert final.json()["pieces"] == ["hello world"]


def test_expect_100_continue_is_not_sent_when_app_does_not_read_input(oxgate):
    server = oxgate("input_app")
    head = simple_request(
        "POST",
        "/?op=none",
        headers=[("Content-Length", "11"), ("Expect", "100-continue")],
    )
    with server.connect() as conn:
        conn.send(head)  # the body is never sent: the server must not wait for it
        first = conn.read_response(allow_informational=True)
    assert first.status == 200, f"expected the final response without a 100 first: {first}"
    assert first.json()["op"] == "none"


# --- methods, targets, headers -----------------------------------------------------------


def test_head_response_has_headers_of_get_but_no_body(oxgate):
    server = oxgate("wsgi_responses")
    with server.connect() as conn:
        get = conn.request(simple_request(target="/single-list"))
        conn.send(simple_request("HEAD", "/single-list") + simple_request(target="/single-list"))
        head = conn.read_response(method="HEAD")
        again = conn.read_response()
    assert head.status == 200
    assert head.body == b""
    assert head.header("Content-Length") == get.header("Content-Length") == str(len(get.body))
    assert again.body == get.body == b"single item body"


def test_absolute_form_request_target_is_routed_by_its_path(echo):
    with echo.connect() as conn:
        resp = conn.request(
            simple_request(target="http://example.test:8080/abs/path?x=1&y=2", host="example.test")
        )
    env = resp.json()
    assert resp.status == 200
    assert env["PATH_INFO"] == "/abs/path"
    assert env["QUERY_STRING"] == "x=1&y=2"


def test_responses_carry_date_and_server_headers(echo):
    with echo.connect() as conn:
        resp = conn.request(simple_request())
    assert (resp.header("Server") or "").lower().startswith("oxgate")
    date = email.utils.parsedate_to_datetime(resp.header("Date"))
    assert resp.header("Date").endswith("GMT")
    assert abs((datetime.now(timezone.utc) - date).total_seconds()) < 60


def test_error_responses_also_carry_date_and_server_headers(counter):
    with counter.connect() as conn:
        resp = conn.request(b"NOT A REQUEST\r\n\r\n")
    assert resp.status == 400
    assert resp.has_header("Date")
    assert (resp.header("Server") or "").lower().startswith("oxgate")


# --- limits (gunicorn's meanings, at the boundary) ---------------------------------------


def _request_line_of(length: int) -> bytes:
    prefix, suffix = "GET /", " HTTP/1.1"
    path = "a" * (length - len(prefix) - len(suffix))
    line = f"{prefix}{path}{suffix}"
    assert len(line) == length
    return f"{line}\r\nHost: t\r\n\r\n".encode()


def test_request_line_at_limit_request_line_is_accepted(oxgate):
    server = oxgate("counter", "--limit-request-line", "100")
    with server.connect() as conn:
        resp = conn.request(_request_line_of(100))
    assert resp.status == 200
    assert app_calls(server) == 1


def test_request_line_over_limit_request_line_is_414_and_app_not_called(oxgate):
    server = oxgate("counter", "--limit-request-line", "100")
    with server.connect() as conn:
        resp = conn.request(_request_line_of(101))
        assert resp.status == 414
        assert conn.wait_closed(5) == b""
    assert app_calls(server) == 0


def _with_field_count(count: int) -> bytes:
    headers = [("Host", "t")] + [(f"X-Field-{i}", "v") for i in range(count - 1)]
    return simple_request(headers=headers)


def test_header_count_at_limit_request_fields_is_accepted(oxgate):
    server = oxgate("counter", "--limit-request-fields", "10")
    with server.connect() as conn:
        resp = conn.request(_with_field_count(10))
    assert resp.status == 200


def test_header_count_over_limit_request_fields_is_431_and_app_not_called(oxgate):
    server = oxgate("counter", "--limit-request-fields", "10")
    with server.connect() as conn:
        resp = conn.request(_with_field_count(11))
        assert resp.status == 431
        assert conn.wait_closed(5) == b""
    assert app_calls(server) == 0


def _with_field_line_of(size: int) -> bytes:
    """A request whose X-Big field line, counted as gunicorn does (CRLF included), is `size`."""
    name = "X-Big: "
    value = "v" * (size - len(name) - 2)
    assert len(f"{name}{value}\r\n") == size
    return f"GET / HTTP/1.1\r\nHost: t\r\n{name}{value}\r\n\r\n".encode()


def test_header_field_at_limit_request_field_size_is_accepted(oxgate):
    """gunicorn counts a field as `name: value` plus its CRLF against the limit."""
    server = oxgate("counter", "--limit-request-field_size", "200")
    with server.connect() as conn:
        resp = conn.request(_with_field_line_of(200))
    assert resp.status == 200


def test_header_field_over_limit_request_field_size_is_431_and_app_not_called(oxgate):
    server = oxgate("counter", "--limit-request-field_size", "200")
    with server.connect() as conn:
        resp = conn.request(_with_field_line_of(201))
        assert resp.status == 431
        assert conn.wait_closed(5) == b""
    assert app_calls(server) == 0


def test_default_limit_request_line_is_4094(counter):
    with counter.connect() as conn:
        assert conn.request(_request_line_of(4094)).status == 200
    with counter.connect() as conn:
        assert conn.request(_request_line_of(4095)).status == 414


# --- malformed and ambiguous requests: 400, connection closed, app never called ----------

BAD_REQUESTS = {
    "content_length_with_transfer_encoding": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "two_different_content_lengths": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    ),
    "content_length_list_with_different_values": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!"
    ),
    "transfer_encoding_not_ending_in_chunked": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"
    ),
    "transfer_encoding_gzip_only": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nhello"
    ),
    "chunked_twice": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"
    ),
    "negative_content_length": (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n"),
    "non_numeric_content_length": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5x\r\n\r\nhello"
    ),
    "malformed_request_line": b"GET\r\nHost: t\r\n\r\n",
    "space_before_header_colon": b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
    "header_without_colon": b"GET / HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n",
    "obsolete_line_folding": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n  folded\r\n\r\n",
    "invalid_chunk_size": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    ),
    "garbage_http_version": b"GET / HTTP/9.x\r\nHost: t\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_malformed_or_ambiguous_request_is_400_and_closed_and_app_not_called(counter, case):
    with counter.connect() as conn:
        conn.send(BAD_REQUESTS[case])
        resp = conn.read_response()
        assert resp.status == 400, resp
        assert conn.wait_closed(5) == b""
    assert app_calls(counter) == 0


def test_content_length_with_transfer_encoding_is_400_and_app_not_called(counter):
    with counter.connect() as conn:
        resp = conn.request(BAD_REQUESTS["content_length_with_transfer_encoding"])
        assert resp.status == 400
        assert conn.wait_closed(5) == b""
    assert app_calls(counter) == 0


def test_two_different_content_lengths_are_400_and_app_not_called(counter):
    with counter.connect() as conn:
        resp = conn.request(BAD_REQUESTS["two_different_content_lengths"])
        assert resp.status == 400
        assert conn.wait_closed(5) == b""
    assert app_calls(counter) == 0


def test_transfer_encoding_not_ending_in_chunked_is_400_and_app_not_called(counter):
    with counter.connect() as conn:
        resp = conn.request(BAD_REQUESTS["transfer_encoding_not_ending_in_chunked"])
        assert resp.status == 400
        assert conn.wait_closed(5) == b""
    assert app_calls(counter) == 0


def test_pipelined_request_after_a_refused_one_is_not_served(counter):
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
    with counter.connect() as conn:
        conn.send(BAD_REQUESTS["content_length_with_transfer_encoding"] + smuggled)
        resp = conn.read_response()
        assert resp.status == 400
        rest = conn.wait_closed(5)
    assert b"HTTP/1.1 200" not in rest
    assert app_calls(counter) == 0


def test_server_keeps_serving_after_refusing_a_request(counter):
    with counter.connect() as conn:
        assert conn.request(b"BROKEN\r\n\r\n").status == 400
    with counter.connect() as conn:
        assert conn.request(simple_request(target="/fine")).status == 200
    assert app_calls(counter) == 1


# --- more connection and framing cases ---------------------------------------------------


def test_expect_100_continue_with_body_sent_at_once_is_served(oxgate):
    server = oxgate("input_app")
    req = simple_request(
        "POST", "/?op=read", headers=[("Expect", "100-continue")], body=b"eager body"
    )
    with server.connect() as conn:
        conn.send(req + simple_request("GET", "/?op=none"))
        first = conn.read_response()  # an interim 100, if any, is skipped
        second = conn.read_response()
    assert first.json()["pieces"] == ["eager body"]
    assert second.json()["op"] == "none"


def test_expect_100_continue_is_never_sent_to_http10_clients(oxgate):
    server = oxgate("input_app")
    req = simple_request(
        "POST", "/?op=read", headers=[("Expect", "100-continue")], body=b"body", version="HTTP/1.0"
    )
    with server.connect() as conn:
        conn.send(req)
        first = conn.read_response(allow_informational=True)
    assert first.status == 200, first
    assert first.json()["pieces"] == ["body"]


def test_requests_pipelined_after_connection_close_are_not_served(counter):
    with counter.connect() as conn:
        conn.send(
            simple_request(target="/first", headers=[("Connection", "close")])
            + simple_request(target="/second")
        )
        first = conn.read_response()
        rest = conn.wait_closed(5)
    assert first.status == 200
    assert rest == b""
    assert app_calls(counter) == 1


def test_transfer_encoding_chunked_is_case_insensitive(echo):
    req = simple_request("POST", "/", headers=[("Transfer-Encoding", "Chunked")])
    with echo.connect() as conn:
        resp = conn.request(req + b"3\r\nabc\r\n0\r\n\r\n")
    assert resp.json()["_body"] == "abc"


def test_header_values_are_trimmed_of_surrounding_whitespace(echo):
    with echo.connect() as conn:
        resp = conn.request(
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Padded:  \t value with  inner \t \r\n\r\n"
        )
    assert resp.json()["HTTP_X_PADDED"] == "value with  inner"


def test_post_with_content_length_zero_has_an_empty_body(echo):
    with echo.connect() as conn:
        resp = conn.request(simple_request("POST", "/", headers=[("Content-Length", "0")]))
    assert resp.status == 200
    assert resp.json()["_body"] == ""


MORE_BAD_REQUESTS = {
    "chunk_size_overflow": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffffffffffff\r\nx\r\n0\r\n\r\n"
    ),
    "nul_in_header_value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
    "cr_in_header_value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
    "control_char_in_target": b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n",
    "space_in_target": b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
    "missing_chunk_crlf": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n"
    ),
    "content_length_too_big_for_u64": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n"
    ),
    "lowercase_http_version": b"GET / http/1.1\r\nHost: t\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(MORE_BAD_REQUESTS))
def test_more_malformed_requests_are_400_and_app_not_called(counter, case):
    with counter.connect() as conn:
        conn.send(MORE_BAD_REQUESTS[case])
        resp = conn.read_response()
        assert resp.status == 400, resp
        assert conn.wait_closed(5) == b""
    assert app_calls(counter) == 0


def test_many_concurrent_connections_are_all_served(oxgate):
    server = oxgate("echo_env", "--threads", "4")
    conns = [server.connect() for _ in range(32)]
    try:
        for i, conn in enumerate(conns):
            conn.send(simple_request(target=f"/c/{i}"))
        paths = [conn.read_response().json()["PATH_INFO"] for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    assert paths == [f"/c/{i}" for i in range(32)]


def test_unread_expect_continue_body_is_never_parsed_as_a_request(oxgate):
    """After a final response without a 100, the server closes or discards the body."""
    server = oxgate("input_app")
    head = simple_request(
        "POST", "/?op=none", headers=[("Content-Length", "11"), ("Expect", "100-continue")]
    )
    with server.connect() as conn:
        conn.send(head)
        first = conn.read_response(allow_informational=True)
        assert first.status == 200
        try:
            conn.send(b"hello world" + simple_request("GET", "/?op=none&second=1"))
        except (BrokenPipeError, ConnectionResetError):
            return  # closed: fine
        try:
            second = conn.read_response()
        except (AssertionError, OSError):
            assert conn.eof, "neither a response nor a close"
            return
    assert second.status == 200, f"the unread body was parsed as a request: {second}"


# --- DESIGN.md: slow clients never hold a Python thread ----------------------------------


def test_client_with_an_incomplete_head_does_not_hold_the_only_python_thread(oxgate):
    server = oxgate("echo_env", "--threads", "1")
    with server.connect() as stalled:
        stalled.send(b"GET /stalled HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        with server.connect() as conn:
            resp = conn.request(simple_request(target="/other"))
    assert resp.status == 200 and resp.json()["PATH_INFO"] == "/other"


def test_client_with_an_incomplete_small_body_does_not_hold_the_only_python_thread(oxgate):
    server = oxgate("echo_env", "--threads", "1")
    with server.connect() as stalled:
        stalled.send(simple_request("POST", "/stalled", headers=[("Content-Length", "100")]))
        stalled.send(b"only part of the body")
        with server.connect() as conn:
            resp = conn.request(simple_request(target="/other"))
        assert resp.status == 200 and resp.json()["PATH_INFO"] == "/other"
        stalled.send(b"x" * (100 - len(b"only part of the body")))
        late = stalled.read_response()
    assert late.json()["_body"].startswith("only part of the body")


def test_client_that_half_closes_after_its_request_still_gets_the_response(echo):
    with echo.connect() as conn:
        conn.send(simple_request(target="/half", headers=[("Connection", "close")]))
        conn.sock.shutdown(socket.SHUT_WR)
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.json()["PATH_INFO"] == "/half"


def test_many_sequential_requests_on_one_keep_alive_connection(echo):
    with echo.connect() as conn:
        for i in range(200):
            resp = conn.request(simple_request(target=f"/seq/{i}"))
            assert resp.json()["PATH_INFO"] == f"/seq/{i}"


def test_deep_pipeline_in_one_send_is_answered_in_order(echo):
    requests = b"".join(
        simple_request("POST", f"/deep/{i}", body=b"b%d" % i)
        if i % 3 == 0
        else simple_request(target=f"/deep/{i}")
        for i in range(50)
    )
    with echo.connect() as conn:
        conn.send(requests)
        got = [conn.read_response().json() for _ in range(50)]
    assert [g["PATH_INFO"] for g in got] == [f"/deep/{i}" for i in range(50)]
    assert [g["_body"] for g in got[::3]] == [f"b{i}" for i in range(0, 50, 3)]


def test_client_disconnect_in_the_middle_of_a_body_does_not_break_the_server(echo):
    for size in (100, 1_000_000):
        with echo.connect() as conn:
            conn.send(simple_request("POST", "/cut", headers=[("Content-Length", str(size))]))
            conn.send(b"x" * (size // 2))
            conn.abort()
    with echo.connect() as conn:
        assert conn.request(simple_request(target="/after-cut")).status == 200
    echo.wait_for_stderr(r"Listening at")  # still the same process, still logging
    assert echo.proc.poll() is None
