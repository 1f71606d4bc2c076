"""Overload: past --request-queue a worker answers 503 at once instead of making
everyone wait, its memory stays flat, and service is normal after the burst.
(The same with wrk at 10x the sustainable rate is bench/overload.sh.)"""

from __future__ import annotations

import select
import socket
import time

from processes import rss_kib, wait_ready
from support import RawConnection, simple_request

BURST = 200
VIEW_MS = 50


def burst(port: int, n: int) -> list[tuple[int, float, str | None]]:
    """n requests on n connections at once; (status, seconds, Retry-After) each,
    in the order the answers arrived."""
    conns = []
    for _ in range(n):
        c = RawConnection(("127.0.0.1", port))
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(c)
    started = time.monotonic()
    for c in conns:
        c.send(simple_request("GET", f"/api/slow?ms={VIEW_MS}"))
    answers = []
    pending = {c.sock: c for c in conns}
    while pending:
        ready, _, _ = select.select(list(pending), [], [], 20)
        assert ready, f"{len(pending)} requests got no answer"
        for sock in ready:
            c = pending.pop(sock)
            resp = c.read_response()
            answers.append((resp.status, time.monotonic() - started, resp.header("Retry-After")))
            c.close()
    return answers


def test_a_burst_past_the_queue_gets_fast_503s_and_flat_memory(oxgate, django_site):
    server = oxgate(
        "--chdir", str(django_site), "mysite.wsgi",
        "--threads", "2", "--request-queue", "8",
        pythonpath=False,
    )  # fmt: skip
    (worker,) = wait_ready(server, 1)
    with server.connect() as conn:
        assert conn.request(simple_request("GET", "/api/slow?ms=0")).status == 200
    rss = []
    for _ in range(3):
        answers = burst(server.port, BURST)
        rss.append(rss_kib(worker))
        statuses = [s for s, _, _ in answers]
        served = [t for s, t, _ in answers if s == 200]
        refused = [(t, retry) for s, t, retry in answers if s == 503]
        assert len(served) + len(refused) == BURST, statuses
        # Two threads and eight places: everyone else is refused.
        assert 2 <= len(served) <= 2 + 8 + 2, statuses
        assert all(retry == "1" for _, retry in refused)
        # Refusals do not wait for the queue to drain.
        assert max(t for t, _ in refused) < max(served)
        # Bounded waiting: without a queue bound the last of 200 requests would
        # wait 200 x 50 ms / 2 threads = 5 s.
        assert max(served) < 2.5, served
    # Memory is flat from burst to burst (a leak per refused request would show).
    assert rss[2] - rss[0] < 4 * 1024, rss
    print(f"\nRSS after each burst: {rss} KiB; served {len(served)}, refused {len(refused)}")
    # One summary line a second, not one per refusal.
    server.wait_for_stderr(r"request queue full \(--request-queue 8\): \d+ request\(s\) refused")
    reports = [ln for ln in server.stderr_text().splitlines() if "request queue full" in ln]
    assert len(reports) < 3 * 5, reports
    with server.connect() as conn:
        for _ in range(20):
            assert conn.request(simple_request("GET", "/api/slow?ms=0")).status == 200


def test_a_refused_request_keeps_its_request_id(oxgate, django_site):
    server = oxgate(
        "--chdir", str(django_site), "mysite.wsgi",
        "--threads", "1", "--request-queue", "1", "--request-id",
        pythonpath=False,
    )  # fmt: skip
    wait_ready(server, 1)
    conns = [RawConnection(("127.0.0.1", server.port)) for _ in range(12)]
    for i, c in enumerate(conns):
        c.send(simple_request("GET", "/api/slow?ms=200", headers=[("X-Request-ID", f"burst-{i}")]))
    refused = {}
    for i, c in enumerate(conns):
        resp = c.read_response()
        if resp.status == 503:
            refused[i] = resp.header("X-Request-ID")
        c.close()
    assert refused, "the burst was all served: nothing refused"
    assert all(rid == f"burst-{i}" for i, rid in refused.items()), refused
