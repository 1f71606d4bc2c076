"""A body read whole before the call goes straight from the socket into the `bytes`
object the app gets from wsgi.input, when the I/O thread holds the GIL for its inline
calls (here: behind a pipelined GET that ran inline on the same connection), and the
body is 16 KiB or more. The app then holds the server's own object: its reference count
is one higher than a copy's. Everything else about the body must be as for any other."""

from __future__ import annotations

import socket
import time

from support import simple_request

BIG = bytes(range(256)) * 160  # 40 KiB, every byte value
LINES = b"".join(b"line %05d of the body\n" % i for i in range(2000))  # 44 KiB


def post(query: str, body: bytes, length: int | None = None) -> bytes:
    declared = str(len(body) if length is None else length)
    return simple_request("POST", f"/?{query}", headers=[("Content-Length", declared)]) + body


def get(name: str) -> bytes:
    return simple_request("GET", "/?op=none", headers=[("X-Name", name)])


def latin1(pieces: list[str]) -> bytes:
    return b"".join(p.encode("latin-1") for p in pieces)


def cut_short(server, send_eof: bool) -> bytes:
    """Half a lent body behind a GET, then EOF or nothing: what the server said."""
    with server.connect() as conn:
        conn.send(get("a") + post("op=read", BIG[:20000], length=len(BIG)))
        assert conn.read_response().status == 200
        if send_eof:
            conn.sock.shutdown(socket.SHUT_WR)
        rest = conn.wait_closed(timeout=10)
    # The worker goes on, lending.
    with server.connect() as conn:
        conn.send(get("b") + post("op=read", BIG))
        assert conn.read_response().status == 200
        assert latin1(conn.read_response().json()["pieces"]) == BIG
    return rest


def test_a_large_body_behind_an_inline_call_is_the_apps_own_object(oxgate):
    server = oxgate("input_app")
    small = BIG[:2048]
    with server.connect() as conn:
        conn.send(get("first") + post("op=read", small) + post("op=read", BIG) + get("last"))
        first, copied, lent, last = (conn.read_response() for _ in range(4))
    assert first.status == 200
    assert latin1(copied.json()["pieces"]) == small
    assert latin1(lent.json()["pieces"]) == BIG
    assert lent.json()["after"] == ""
    assert lent.json()["refs"] == [copied.json()["refs"][0] + 1], "the body was copied"
    # Nothing read past the body: the request behind it is whole.
    assert "HTTP_X_NAME" in last.json()["http_keys"]


def test_a_lent_body_read_in_pieces_and_lines_is_the_body(oxgate):
    server = oxgate("input_app")
    with server.connect() as conn:
        conn.send(
            get("a")
            + post("op=read_n&n=1000", BIG)
            + post("op=readline", LINES)
            + post("op=readlines", LINES)
            + post("op=read_once&n=100", LINES)
        )
        _, pieces, lines, listed, once = (conn.read_response() for _ in range(5))
    got = pieces.json()["pieces"]
    assert latin1(got) == BIG
    assert all(0 < len(p) <= 1000 for p in got[:-1]) and got[-1] == ""
    assert latin1(lines.json()["pieces"]) == LINES
    assert len(lines.json()["pieces"]) == 2001  # 2000 lines and the final b""
    assert latin1(listed.json()["pieces"]) == LINES
    assert latin1(once.json()["pieces"]) == LINES[:100]
    assert once.json()["after"].encode("latin-1") == LINES[100:]


def test_a_lent_body_that_arrives_in_pieces_is_whole(oxgate):
    server = oxgate("input_app")
    small = BIG[:2048]
    with server.connect() as conn:
        conn.send(get("a") + post("op=read", small))
        conn.send(post("op=read", BIG)[: -len(BIG) + 5000])
        for at in range(5000, len(BIG), 12000):
            time.sleep(0.2)  # the I/O thread's read of the body waits in between
            conn.send(BIG[at : at + 12000])
        _, copied, lent = (conn.read_response() for _ in range(3))
    assert latin1(lent.json()["pieces"]) == BIG
    assert lent.json()["refs"] == [copied.json()["refs"][0] + 1], "the body was copied"


def test_a_client_gone_in_a_lent_body_is_answered_and_the_worker_goes_on(oxgate):
    rest = cut_short(oxgate("input_app"), send_eof=True)
    assert rest.startswith(b"HTTP/1.1 400 "), rest


def test_a_lent_body_that_stalls_is_cut_after_body_timeout(oxgate):
    rest = cut_short(oxgate("input_app", "--body-timeout", "1"), send_eof=False)
    assert rest.startswith(b"HTTP/1.1 408 "), rest


# --threads 4: the I/O thread never holds the GIL, so it takes a spare `bytes` object
# that an app thread made ahead of need (after a large body found none), and the app
# thread cuts it to the body's length before the call.


def copied_refs(conn) -> int:
    """The reference count the app sees on a body that is a copy (2 KiB: never lent)."""
    conn.send(post("op=read", BIG[:2048]))
    return conn.read_response().json()["refs"][0]


def read_until_lent(conn, body: bytes, copied: int) -> None:
    """Post `body` (read whole by the app), one at a time, until the app gets the
    server's object: an app thread makes a spare after its call, which may end after
    the next body was read."""
    for _ in range(20):
        conn.send(post("op=read", body))
        got = conn.read_response().json()
        assert latin1(got["pieces"]) == body
        if got["refs"] == [copied + 1]:
            return
    raise AssertionError(f"a body of {len(body)} bytes was copied 20 times")


def test_with_more_threads_a_large_body_goes_into_a_spare_object_cut_to_it(oxgate):
    server = oxgate("input_app", "--threads", "4")
    with server.connect() as conn:
        copied = copied_refs(conn)
        conn.send(post("op=read", BIG))
        first = conn.read_response().json()
        assert latin1(first["pieces"]) == BIG
        assert first["refs"] == [copied], "a spare was there before any large body"
        read_until_lent(conn, BIG, copied)  # as large as the spare
        read_until_lent(conn, BIG[:20000], copied)  # cut to the body
        # Read in pieces and by lines, whether lent (cut or not) or copied: the body.
        lines = LINES[: 23 * 1500]
        for _ in range(3):
            conn.send(post("op=read_n&n=1000", BIG[:30000]) + post("op=readline", lines))
            pieces, by_line = conn.read_response(), conn.read_response()
            assert latin1(pieces.json()["pieces"]) == BIG[:30000]
            assert latin1(by_line.json()["pieces"]) == lines
            assert len(by_line.json()["pieces"]) == 1501


def test_with_more_threads_a_client_gone_in_a_spare_body_is_answered(oxgate):
    server = oxgate("input_app", "--threads", "4")
    with server.connect() as conn:
        copied = copied_refs(conn)
        read_until_lent(conn, BIG, copied)
        # The next spare, made by now, takes half a body, then EOF.
        conn.send(post("op=read", BIG[:20000], length=len(BIG)))
        conn.sock.shutdown(socket.SHUT_WR)
        rest = conn.wait_closed(timeout=10)
    assert rest.startswith(b"HTTP/1.1 400 "), rest
    with server.connect() as conn:
        read_until_lent(conn, BIG, copied)


def test_with_more_threads_a_body_over_a_mib_is_copied_not_kept_spare(oxgate):
    # Spares stay made once large bodies arrived: at most 1 MiB of them per worker,
    # whatever --request-buffer allows, so a larger body is copied as before.
    server = oxgate("input_app", "--threads", "4", "--request-buffer", str(4 << 20))
    huge = BIG * 52  # 2 MiB and a bit
    with server.connect() as conn:
        copied = copied_refs(conn)
        for _ in range(4):
            conn.send(post("op=read", huge))
            got = conn.read_response().json()
            assert latin1(got["pieces"]) == huge
            assert got["refs"] == [copied], "a 2 MiB body went into a spare"
        read_until_lent(conn, BIG, copied)  # and smaller ones still may


def test_with_more_threads_spares_unused_for_ten_seconds_are_freed(oxgate):
    server = oxgate("input_app", "--threads", "4")
    with server.connect() as conn:
        copied = copied_refs(conn)
        read_until_lent(conn, BIG, copied)
    # No large body for over 10 s (and a new connection: keep-alive ends first): the
    # next call frees the spares...
    time.sleep(10.5)
    with server.connect() as conn:
        conn.send(get("idle"))
        assert conn.read_response().status == 200
        time.sleep(0.2)  # (its app thread frees them after its response)
        # ...so the next large body finds none, and asks for them again.
        conn.send(post("op=read", BIG))
        got = conn.read_response().json()
        assert latin1(got["pieces"]) == BIG
        assert got["refs"] == [copied], "a spare outlived 10 s unused"
        read_until_lent(conn, BIG, copied)
