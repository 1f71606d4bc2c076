"""With more than one app thread, a response that ends while requests wait for the
thread is written with theirs, not between two calls; nothing keeps it waiting for
more than about a millisecond."""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from processes import held_still, wait_ready
from support import simple_request

APP = "hold_app"


@contextmanager
def queued_at_once(oxgate, threads: int, count: int, target: str) -> Iterator[list]:
    """`count` connections to a new server, each with a request for `target` (its
    `{port}` filled in) sent while the worker is stopped, so the worker reads them all
    in one turn and queues them before an app thread runs one."""
    server = oxgate(APP, "--threads", str(threads))
    (worker,) = wait_ready(server, 1)
    conns = [server.connect() for _ in range(count)]
    try:
        for c in conns:  # accepted and warm
            c.send(simple_request("GET", "/"))
            assert c.read_response().status == 200
        request = simple_request("GET", target.format(port=server.port))
        with held_still(worker):
            for c in conns:
                c.send(request)
        yield conns
    finally:
        for c in conns:
            c.close()


def answered_before(release: Path, conns: list, count: int, waiting: str) -> list[int]:
    """The call numbers of the first `count` responses to arrive, each within 10 s,
    while some calls wait for `release`; then, released, those of the others."""
    pending, first = list(conns), []
    try:
        while len(first) < count:
            ready, _, _ = select.select([c.sock for c in pending], [], [], 10)
            assert ready, f"no response while {waiting}; got calls {first}"
            conn = next(c for c in pending if c.sock is ready[0])
            pending.remove(conn)
            first.append(int(conn.read_response().body))
    finally:
        release.touch()
    return first + sorted(int(c.read_response().body) for c in pending)


def test_responses_wait_for_the_queue_to_run_dry_then_go_out_together(oxgate):
    with queued_at_once(oxgate, 4, 8, "/sent?port={port}") as conns:
        seen = sorted(tuple(map(int, c.read_response().body.split())) for c in conns)
    # Each call saw how many segments the worker had sent so far. Written as each call
    # ends, every call would see one response more than the call before it. Held, they
    # go out when the queue runs dry (before the last call), or when the I/O thread
    # finds them held for a millisecond: calls in between see no change.
    assert [n for n, _ in seen] == list(range(1, 9)), seen
    sent = [s for _, s in seen]
    assert any(a == b for a, b in zip(sent[:7], sent[1:7])), seen


def test_a_slow_call_behind_a_held_response_holds_it_a_moment_only(oxgate, tmp_path):
    # Two threads: the calls 2 and 3 keep both busy, computing with the GIL held, while
    # the call 4 waits in the queue, so no app thread writes call 1's response before
    # the I/O thread does. (With more threads, one would take call 4 and write it.)
    release = tmp_path / "release"
    with queued_at_once(oxgate, 2, 4, f"/nth?release={release}") as conns:
        calls = answered_before(release, conns, 1, "calls 2 and 3 run")
    assert calls == [1, 2, 3, 4]


def test_a_response_held_while_nothing_is_queued_still_goes_out(oxgate, tmp_path):
    # Call 1 is taken with call 2 queued behind it, so its response may wait. It waits
    # (the GIL released) until another thread has run call 2, which leaves the queue
    # empty and the I/O thread with no clock running; then its close() blocks. Its
    # response must not wait for the close.
    release = tmp_path / "release"
    with queued_at_once(oxgate, 2, 2, f"/pair?release={release}") as conns:
        calls = answered_before(release, conns, 2, "call 1's close() waits")
    assert sorted(calls) == [1, 2]
