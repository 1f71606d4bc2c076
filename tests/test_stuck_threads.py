"""--timeout with --threads > 1: one stuck request gets a 504; its neighbours keep serving."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from support import wait_until


@pytest.mark.parametrize("route", ["/sleep", "/busy"], ids=["time.sleep", "busy-loop"])
def test_stuck_request_gets_504_and_the_worker_is_recycled_gracefully(oxgate, route):
    server = oxgate("crashy", "--threads", "2", "--timeout", "2", "--graceful-timeout", "2")
    wait_until(lambda: "Worker ready" in server.stderr_text(), 10, "worker")
    first = httpx.get(server.url + "/pid", timeout=5).json()["pid"]
    stuck: dict[str, object] = {}

    def call() -> None:
        started = time.monotonic()
        resp = httpx.get(server.url + route, timeout=20)
        stuck["status"], stuck["took"] = resp.status_code, time.monotonic() - started

    client = threading.Thread(target=call, daemon=True)
    client.start()
    # While one thread is stuck, the other answers (on the same worker).
    time.sleep(0.3)
    if route == "/sleep":
        assert httpx.get(server.url + "/pid", timeout=5).json()["pid"] == first
    client.join(15)
    assert stuck["status"] == 504
    assert 1.8 <= stuck["took"] < 5, stuck
    wait_until(
        lambda: "(answered 504); its Python stacks follow" in server.stderr_text(),
        10,
        "the master's line",
    )
    assert "got no response within 2s" in server.stderr_text()  # the worker's line
    assert f"GET {route}" in server.stderr_text()
    # the stuck thread's stack, in the app's own file
    wait_until(lambda: 'crashy.py", line' in server.stderr_text(), 10, "the stack dump")
    replaced = wait_until(
        lambda: [ln for ln in server.stderr_text().splitlines() if "Worker ready" in ln][1:],
        10,
        "a replacement worker",
    )
    assert replaced
    wait_until(
        lambda: httpx.get(server.url + "/pid", timeout=5).json()["pid"] != first,
        10,
        "the replacement to serve",
    )


def test_timeout_on_a_keep_alive_connection_counts_from_the_request_not_the_idle_wait(oxgate):
    # The connection's keep-alive timer (1 s) fires first during a request
    # given 3 s: the request goes on, and --timeout still holds it to 3 s.
    server = oxgate(
        "crashy", "--threads", "2", "--timeout", "3", "--keep-alive", "1", "--graceful-timeout", "2"
    )
    with httpx.Client(base_url=server.url, timeout=20) as client:
        assert client.get("/pid").status_code == 200
        time.sleep(0.5)
        slow = client.get("/sleep", params={"s": "1.6"})
        assert (slow.status_code, slow.text) == (200, "slept")
        started = time.monotonic()
        stuck = client.get("/sleep")
        took = time.monotonic() - started
    assert stuck.status_code == 504
    assert 2.8 <= took < 5, took
