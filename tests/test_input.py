"""wsgi.input: every read method, bounded by the body, de-chunked."""

from __future__ import annotations

import pytest
from support import simple_request

BODY = b"line one\nline two\n\nlast line without newline"


@pytest.fixture
def inp(oxgate):
    return oxgate("input_app")


def post(server, query: str, body: bytes = BODY, chunked: bool = False) -> dict:
    if chunked:
        half = len(body) // 2
        framed = b""
        for part in (body[:half], body[half:]):
            if part:
                framed += b"%x\r\n%s\r\n" % (len(part), part)
        framed += b"0\r\n\r\n"
        req = simple_request(
            "POST", f"/?{query}", headers=[("Transfer-Encoding", "chunked")], body=framed
        )
    else:
        req = simple_request("POST", f"/?{query}", headers=[("Content-Length", str(len(body)))])
        req += body
    with server.connect() as conn:
        resp = conn.request(req)
    assert resp.status == 200, resp
    return resp.json()


def b(s: str) -> bytes:
    return s.encode("latin-1")


def test_read_returns_the_whole_body_then_empty_bytes(inp):
    got = post(inp, "op=read")
    assert [b(p) for p in got["pieces"]] == [BODY]
    assert got["types"] == ["bytes"]
    assert got["after"] == ""


def test_read_none_and_read_negative_return_the_whole_body(inp):
    assert b(post(inp, "op=read_none")["pieces"][0]) == BODY
    assert b(post(inp, "op=read_negative")["pieces"][0]) == BODY


def test_read_n_returns_at_most_n_bytes_until_empty_bytes(inp):
    got = post(inp, "op=read_n&n=7")
    pieces = [b(p) for p in got["pieces"]]
    assert pieces[-1] == b""
    assert all(0 < len(p) <= 7 for p in pieces[:-1])
    assert b"".join(pieces) == BODY


def test_read_n_larger_than_body_returns_only_the_body(inp):
    got = post(inp, "op=read_once&n=100000")
    assert b(got["pieces"][0]) == BODY
    assert got["after"] == ""


def test_readline_returns_lines_with_newlines_then_empty_bytes(inp):
    pieces = [b(p) for p in post(inp, "op=readline")["pieces"]]
    assert pieces == [
        b"line one\n",
        b"line two\n",
        b"\n",
        b"last line without newline",
        b"",
    ]


def test_readline_n_returns_at_most_n_bytes_per_call(inp):
    pieces = [b(p) for p in post(inp, "op=readline_n&n=5")["pieces"]]
    assert pieces[:3] == [b"line ", b"one\n", b"line "]
    assert all(len(p) <= 5 for p in pieces)
    assert pieces[-1] == b""
    assert b"".join(pieces) == BODY


def test_readlines_returns_all_lines(inp):
    got = post(inp, "op=readlines")
    assert [b(p) for p in got["pieces"]] == BODY.splitlines(keepends=True)
    assert got["after"] == ""


def test_readlines_with_hint_stops_once_hint_bytes_are_read(inp):
    got = post(inp, "op=readlines&hint=10")
    lines = [b(p) for p in got["pieces"]]
    # io semantics: lines are read until their total size reaches the hint
    assert lines == [b"line one\n", b"line two\n"]
    assert b(got["after"]) == b"\nlast line without newline"


def test_iteration_yields_lines(inp):
    got = post(inp, "op=iter")
    assert [b(p) for p in got["pieces"]] == BODY.splitlines(keepends=True)


def test_read_at_end_of_empty_body_returns_empty_bytes(inp):
    with inp.connect() as conn:
        resp = conn.request(simple_request("GET", "/?op=read"))
    assert resp.json()["pieces"] == [""]
    assert resp.json()["after"] == ""


def test_read_never_goes_past_the_body_into_a_pipelined_request(inp):
    next_request = simple_request("GET", "/?op=none", headers=[("X-Next", "1")])
    with inp.connect() as conn:
        conn.send(
            simple_request("POST", "/?op=read_once&n=100000", headers=[("Content-Length", "5")])
            + b"hello"
            + next_request
        )
        first = conn.read_response()
        second = conn.read_response()
    assert first.json()["pieces"] == ["hello"]
    assert first.json()["after"] == ""
    assert second.status == 200
    assert "HTTP_X_NEXT" in second.json()["http_keys"]


def test_readline_never_goes_past_the_body_into_a_pipelined_request(inp):
    with inp.connect() as conn:
        conn.send(
            simple_request("POST", "/?op=readline", headers=[("Content-Length", "3")])
            + b"abc"
            + simple_request("GET", "/?op=none")
        )
        first = conn.read_response()
        second = conn.read_response()
    assert first.json()["pieces"] == ["abc", ""]
    assert second.json()["op"] == "none"


def test_chunked_body_is_dechunked_for_read(inp):
    got = post(inp, "op=read", chunked=True)
    assert b(got["pieces"][0]) == BODY
    assert got["after"] == ""


def test_chunked_body_is_dechunked_for_readline(inp):
    pieces = [b(p) for p in post(inp, "op=readline", chunked=True)["pieces"]]
    assert pieces == [*BODY.splitlines(keepends=True), b""]


def test_chunked_body_is_dechunked_for_read_n(inp):
    pieces = [b(p) for p in post(inp, "op=read_n&n=4", chunked=True)["pieces"]]
    assert b"".join(pieces) == BODY
    assert all(len(p) <= 4 for p in pieces)


def test_large_body_is_read_completely(inp):
    body = bytes(range(256)) * 4096  # 1 MiB, larger than any small-body buffer
    got = post(inp, "op=read_n&n=65536", body=body)
    assert b"".join(b(p) for p in got["pieces"]) == body


def test_unread_body_does_not_break_the_next_request_on_the_connection(inp):
    with inp.connect() as conn:
        conn.send(
            simple_request("POST", "/?op=none", headers=[("Content-Length", "11")])
            + b"hello world"
            + simple_request("GET", "/?op=read", headers=[("X-Second", "yes")])
        )
        first = conn.read_response()
        second = conn.read_response()
    assert first.status == 200
    assert second.status == 200
    assert "HTTP_X_SECOND" in second.json()["http_keys"]


def test_partly_read_body_does_not_break_the_next_request_on_the_connection(inp):
    with inp.connect() as conn:
        conn.send(
            simple_request("POST", "/?op=read_once&n=3", headers=[("Content-Length", "11")])
            + b"hello world"
            + simple_request("GET", "/?op=read", headers=[("X-Second", "yes")])
        )
        first = conn.read_response()
        second = conn.read_response()
    assert first.json()["pieces"] == ["hel"]
    assert first.json()["after"] == "lo world"
    assert "HTTP_X_SECOND" in second.json()["http_keys"]


def test_large_unread_body_is_never_parsed_as_a_request(inp):
    body = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n" * 30000  # ~1 MiB of request-like bytes
    with inp.connect() as conn:
        conn.send(simple_request("POST", "/?op=none", headers=[("Content-Length", str(len(body)))]))
        first = conn.read_response()
        assert first.status == 200
        try:
            conn.send(body + simple_request("GET", "/?op=none", headers=[("X-Last", "1")]))
        except (BrokenPipeError, ConnectionResetError):
            return  # the server closed instead of draining: fine
        try:
            second = conn.read_response()
        except (AssertionError, OSError):
            return  # closed: fine
        assert "HTTP_X_LAST" in second.json()["http_keys"], "a body line was served as a request"
        assert conn.is_closed_by_peer(1.0) or not conn.buf
