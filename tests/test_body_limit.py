"""--limit-request-body: a body past the limit gets 413; at the limit it passes."""

from __future__ import annotations

import pytest
from support import app_calls

LIMIT = 100_000  # above the 64 KiB read-ahead, so both body paths are crossed


def _cl_request(size: int, expect: bool = False) -> bytes:
    head = f"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n"
    if expect:
        head += "Expect: 100-continue\r\n"
    return (head + "\r\n").encode()


def _chunked(size: int, piece: int = 7000) -> bytes:
    out = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    left = size
    while left:
        n = min(piece, left)
        out += f"{n:x}\r\n".encode() + b"x" * n + b"\r\n"
        left -= n
    return out + b"0\r\n\r\n"


@pytest.fixture
def limited(oxgate):
    return oxgate("counter", "--limit-request-body", str(LIMIT))


@pytest.mark.parametrize("size", [10, 60_000, LIMIT], ids=["small", "buffered", "at-limit"])
def test_content_length_up_to_the_limit_is_served(limited, size):
    with limited.connect() as conn:
        resp = conn.request(_cl_request(size) + b"x" * size, method="POST")
    assert resp.status == 200
    assert resp.body.endswith(f" {size}".encode())


def test_content_length_past_the_limit_is_413_before_the_app_and_closed(limited):
    with limited.connect() as conn:
        conn.send(_cl_request(LIMIT + 1))
        resp = conn.read_response("POST")
        assert resp.status == 413
        assert conn.wait_closed(5) == b""
    assert app_calls(limited) == 0


def test_expect_continue_past_the_limit_gets_413_and_no_100(limited):
    with limited.connect() as conn:
        conn.send(_cl_request(LIMIT + 1, expect=True))
        resp = conn.read_response("POST", allow_informational=True)
        assert resp.status == 413
    assert app_calls(limited) == 0


@pytest.mark.parametrize("size", [5_000, LIMIT], ids=["small", "at-limit"])
def test_chunked_body_up_to_the_limit_is_served(limited, size):
    with limited.connect() as conn:
        resp = conn.request(_chunked(size), method="POST")
    assert resp.status == 200
    assert resp.body.endswith(f" {size}".encode())


@pytest.mark.parametrize("size", [LIMIT + 1, 3 * LIMIT], ids=["one-over", "far-over"])
def test_chunked_body_past_the_limit_is_413_and_closed(limited, size):
    with limited.connect() as conn:
        conn.send(_chunked(size))
        resp = conn.read_response("POST")
        assert resp.status == 413
        conn.wait_closed(5)


def test_no_limit_by_default(oxgate):
    server = oxgate("counter")
    with server.connect() as conn:
        resp = conn.request(_chunked(3 * LIMIT), method="POST")
    assert resp.status == 200
    assert resp.body.endswith(f" {3 * LIMIT}".encode())
