"""--metrics-bind: Prometheus /metrics and the HTML status page, served by the master.

Every test starts a real oxgate with `--metrics-bind 127.0.0.1:0` (the master logs the
port it got), sends real requests, scrapes the endpoint over a real socket and parses
the exposition text with the small parser below.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from h2_client import H2
from processes import wait_ready
from support import RawConnection, run_oxgate, simple_request, wait_until

METRICS_RE = re.compile(r"Metrics at: http://(\S+)/metrics")
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
REPLACE_TIMEOUT = 10.0
Labels = tuple[tuple[str, str], ...]


# --- a small exposition-format parser -----------------------------------------------------


def parse(text: str) -> dict[str, dict[Labels, float]]:
    """{name: {sorted label pairs: value}}; checks each family has HELP and TYPE first."""
    samples: dict[str, dict[Labels, float]] = {}
    typed: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "histogram"), line
            typed[name] = kind
            continue
        assert line and not line.startswith("#"), f"unexpected line {line!r}"
        m = SAMPLE_RE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        family = family if family in typed else name
        assert family in typed and family in helped, f"{name} has no TYPE/HELP before it"
        pairs = tuple(sorted(LABEL_RE.findall(labels or "")))
        samples.setdefault(name, {})[pairs] = float(value)
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def by_label(samples, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in samples.get(name, {}).items()}


# --- helpers --------------------------------------------------------------------------------


def endpoint(server) -> str:
    return server.wait_for_stderr(METRICS_RE.pattern).group(1)


def get(addr: str, path: str, method: str = "GET") -> httpx.Response:
    return httpx.request(method, f"http://{addr}{path}", timeout=10)


def scrape(addr: str) -> dict[str, dict[Labels, float]]:
    resp = get(addr, "/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(resp.text)


def status_page(addr: str) -> str:
    resp = get(addr, "/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    return resp.text


def requests_by(samples) -> dict[tuple[str, str], float]:
    return {
        (dict(k)["method"], dict(k)["status"]): v
        for k, v in samples.get("oxgate_requests_total", {}).items()
        if v
    }


def send_on_new_connections(port: int, batch: list[tuple[str, str]]) -> list[int]:
    """Each request on a connection of its own, so both workers get some."""
    statuses = []
    for method, target in batch:
        with RawConnection(("127.0.0.1", port)) as conn:
            statuses.append(conn.request(simple_request(method, target), method).status)
    return statuses


def hold(port: int, target: str) -> threading.Thread:
    """A request in a thread of its own (it holds an app thread until answered)."""

    def run():
        with RawConnection(("127.0.0.1", port), timeout=30) as conn:
            conn.request(simple_request("GET", target))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def histogram(samples, name: str) -> tuple[list[tuple[float, float]], float, float]:
    buckets = sorted(
        (float("inf") if dict(k)["le"] == "+Inf" else float(dict(k)["le"]), v)
        for k, v in samples[f"{name}_bucket"].items()
    )
    return buckets, value(samples, f"{name}_count"), value(samples, f"{name}_sum")


# --- /metrics ---------------------------------------------------------------------------------


def test_requests_are_counted_by_method_and_status_class_across_two_workers(oxgate):
    server = oxgate("metrics_app", "-w", "2", "--metrics-bind", "127.0.0.1:0")
    workers = wait_ready(server, 2)
    addr = endpoint(server)
    batch = (
        [("GET", "/")] * 6
        + [("POST", "/status/201")] * 3
        + [("GET", "/status/404")] * 2
        + [("PUT", "/status/302")]
        + [("DELETE", "/status/500")] * 2
        + [("HEAD", "/")]
        + [("PROPFIND", "/")] * 2
    )
    statuses = send_on_new_connections(server.port, batch)
    assert statuses.count(404) == 2 and statuses.count(500) == 2, statuses
    # Both workers served some: ask each request's worker until both answered. On a
    # loaded machine the kernel may hand every new connection to the same worker, so
    # now and then a slow request holds the one that answers (its I/O thread runs the
    # call inline) while the next connection is made.
    seen = set()
    asked = 0
    while seen != set(workers) and asked < 200:
        holder = None
        if asked and asked % 10 == 0:
            holder = RawConnection(("127.0.0.1", server.port))
            holder.send(simple_request("GET", "/sleep?s=0.3"))
            time.sleep(0.05)
            asked += 1
        with RawConnection(("127.0.0.1", server.port)) as conn:
            seen.add(int(conn.request(simple_request("GET", "/pid")).text))
        asked += 1
        if holder:
            assert holder.read_response().status == 200
            holder.close()
    assert seen == set(workers), (seen, workers)
    expected = {
        ("GET", "2xx"): 6 + asked,
        ("POST", "2xx"): 3,
        ("GET", "4xx"): 2,
        ("PUT", "3xx"): 1,
        ("DELETE", "5xx"): 2,
        ("HEAD", "2xx"): 1,
        ("OTHER", "2xx"): 2,
    }
    # A worker counts a request just after its response left: poll until all are in.
    wait_until(lambda: requests_by(scrape(addr)) == expected, 10, lambda: requests_by(scrape(addr)))
    samples = scrape(addr)
    assert value(samples, "oxgate_workers_alive") == 2
    assert value(samples, "oxgate_requests_in_flight") == 0
    rss = by_label(samples, "oxgate_worker_rss_bytes", "worker")
    assert sorted(rss) == ["0", "1"] and all(v > 1 << 20 for v in rss.values()), rss
    # The status page splits the same requests between the two workers.
    page = status_page(addr)
    row = r'<td class="num">(\d+)</td><td class="num">\d+</td><td class="num">[\d.]+ MiB'
    served = [int(n) for n in re.findall(row, page)]
    assert sum(served) == sum(expected.values()) and all(served), served


def test_histogram_buckets_are_cumulative_and_count_every_request(oxgate):
    server = oxgate("metrics_app", "-w", "2", "--threads", "2", "--metrics-bind", "127.0.0.1:0")
    wait_ready(server, 2)
    addr = endpoint(server)
    n = 30
    send_on_new_connections(server.port, [("GET", "/")] * (n - 2) + [("GET", "/sleep?s=0.3")] * 2)
    wait_until(lambda: sum(requests_by(scrape(addr)).values()) == n, 10, "all requests counted")
    samples = scrape(addr)
    for name in ("oxgate_request_duration_seconds", "oxgate_request_queue_wait_seconds"):
        buckets, count, total = histogram(samples, name)
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), f"{name} buckets are not cumulative: {buckets}"
        assert buckets[-1] == (float("inf"), count), buckets
        assert count == n, (name, count)
        assert total >= 0
    buckets, count, total = histogram(samples, "oxgate_request_duration_seconds")
    # The two 0.3 s requests are above the 0.25 s bucket, and in the sum.
    le_025 = dict(buckets)[0.25]
    assert le_025 == n - 2, buckets
    assert 0.6 <= total < 0.6 + 5, total


def test_a_worker_killed_with_sigkill_is_counted_as_a_crash_and_its_counts_stay(oxgate):
    server = oxgate("metrics_app", "-w", "2", "--metrics-bind", "127.0.0.1:0")
    workers = wait_ready(server, 2)
    addr = endpoint(server)
    send_on_new_connections(server.port, [("GET", "/")] * 20 + [("POST", "/status/500")] * 4)
    wait_until(lambda: sum(requests_by(scrape(addr)).values()) == 24, 10, "24 requests counted")
    before = requests_by(scrape(addr))
    assert before == {("GET", "2xx"): 20, ("POST", "5xx"): 4}, before
    os.kill(workers[0], signal.SIGKILL)
    (replacement,) = wait_ready(server, 1, exclude=workers, timeout=REPLACE_TIMEOUT)
    samples = scrape(addr)
    restarts = by_label(samples, "oxgate_worker_restarts_total", "cause")
    assert restarts == {
        "crash": 1,
        "timeout": 0,
        "max-requests": 0,
        "memory": 0,
        "reload": 0,
    }, restarts
    after = requests_by(samples)
    assert after == before, "a dead worker's requests must stay in the totals"
    assert value(samples, "oxgate_workers_alive") == 2
    page = status_page(addr)
    assert str(replacement) in page and str(workers[1]) in page
    assert str(workers[0]) not in page
    # And they keep counting up from there.
    send_on_new_connections(server.port, [("GET", "/")] * 4)
    wait_until(
        lambda: requests_by(scrape(addr)).get(("GET", "2xx")) == 24, 10, "4 more requests counted"
    )


def test_max_requests_and_hup_restarts_are_counted_by_cause(oxgate):
    server = oxgate(
        "metrics_app", "-w", "1", "--max-requests", "5", "--metrics-bind", "127.0.0.1:0"
    )
    (first,) = wait_ready(server, 1)
    addr = endpoint(server)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
        for _ in range(5):
            assert client.get("/").status_code == 200
    (second,) = wait_ready(server, 1, exclude=[first], timeout=REPLACE_TIMEOUT)

    def restarts():
        return by_label(scrape(addr), "oxgate_worker_restarts_total", "cause")

    wait_until(lambda: restarts()["max-requests"] == 1, REPLACE_TIMEOUT, restarts)
    os.kill(server.pid, signal.SIGHUP)
    wait_ready(server, 1, exclude=[first, second], timeout=REPLACE_TIMEOUT)
    wait_until(lambda: restarts()["reload"] == 1, REPLACE_TIMEOUT, restarts)
    assert restarts()["crash"] == 0


def test_in_flight_counts_a_request_held_in_a_slow_app(oxgate):
    server = oxgate("slow_app", "--threads", "2", "--metrics-bind", "127.0.0.1:0")
    wait_ready(server, 1)
    addr = endpoint(server)
    assert value(scrape(addr), "oxgate_requests_in_flight") == 0
    held = hold(server.port, "/sleep?s=2")
    wait_until(
        lambda: value(scrape(addr), "oxgate_requests_in_flight") == 1, 10, "one request in flight"
    )
    page = status_page(addr)
    assert '<td class="path">/sleep</td>' in page, page
    held.join(15)
    wait_until(
        lambda: value(scrape(addr), "oxgate_requests_in_flight") == 0, 10, "no request in flight"
    )
    # It is now among the slowest recent requests.
    slow_row = r'<td class="num">2\.\d\d s</td><td class="s2">200</td>'
    assert re.search(slow_row, status_page(addr))


def test_an_app_threads_answer_is_counted_while_its_connection_stays_open(oxgate):
    """An app thread that wrote the whole response records it itself: counted, and no
    longer in flight, before the client's next request or the end of its keep-alive
    (which is when the I/O thread would next look)."""
    server = oxgate(
        "metrics_app", "--threads", "4", "--keep-alive", "60", "--metrics-bind", "127.0.0.1:0"
    )
    wait_ready(server, 1)
    addr = endpoint(server)
    with server.connect() as conn:
        for n, status in enumerate((201, 404), start=1):
            assert conn.request(simple_request("GET", f"/status/{status}")).status == status
            wait_until(
                lambda n=n: sum(requests_by(scrape(addr)).values()) == n,
                5,
                lambda: requests_by(scrape(addr)),
            )
            assert value(scrape(addr), "oxgate_requests_in_flight") == 0
        assert requests_by(scrape(addr)) == {("GET", "2xx"): 1, ("GET", "4xx"): 1}
        # The connection still serves.
        assert conn.request(simple_request("GET", "/")).status == 200


def test_http2_answers_are_counted_and_leave_the_in_flight_count(oxgate):
    server = oxgate("metrics_app", "--metrics-bind", "127.0.0.1:0")
    wait_ready(server, 1)
    addr = endpoint(server)
    with H2.tcp(server.port) as c:
        c.start()
        assert c.get("/status/201").status == 201
        assert c.get("/status/404").status == 404
        wait_until(
            lambda: sum(requests_by(scrape(addr)).values()) == 2,
            5,
            lambda: requests_by(scrape(addr)),
        )
        assert value(scrape(addr), "oxgate_requests_in_flight") == 0
    assert requests_by(scrape(addr)) == {("GET", "2xx"): 1, ("GET", "4xx"): 1}


def test_requests_refused_with_503_are_counted(oxgate):
    server = oxgate(
        "metrics_app", "--threads", "2", "--request-queue", "1", "--metrics-bind", "127.0.0.1:0"
    )
    wait_ready(server, 1)
    addr = endpoint(server)
    conns = [RawConnection(("127.0.0.1", server.port), timeout=20) for _ in range(6)]
    try:
        for c in conns:
            c.send(simple_request("GET", "/sleep?s=1"))
        statuses = [c.read_response().status for c in conns]
    finally:
        for c in conns:
            c.close()
    refused = statuses.count(503)
    assert refused >= 1 and statuses.count(200) + refused == 6, statuses

    def counted():
        s = scrape(addr)
        return (value(s, "oxgate_refused_requests_total"), requests_by(s).get(("GET", "5xx")))

    wait_until(lambda: counted() == (refused, refused), 10, counted)


def test_a_head_that_never_completes_counts_as_a_slow_client(oxgate):
    server = oxgate("metrics_app", "--header-timeout", "1", "--metrics-bind", "127.0.0.1:0")
    wait_ready(server, 1)
    addr = endpoint(server)
    with RawConnection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert conn.read_response().status == 408
    with RawConnection(("127.0.0.1", server.port), timeout=10) as conn:
        assert conn.request(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").status == 400

    def slow():
        s = scrape(addr)
        kinds = by_label(s, "oxgate_slow_clients_total", "kind")
        return kinds, value(s, "oxgate_invalid_requests_total")

    wait_until(lambda: slow() == ({"header": 1, "body": 0, "write": 0}, 2), 10, slow)
    assert requests_by(scrape(addr)) == {}, "a request without a head has no method"


# --- the endpoint itself ------------------------------------------------------------------------


def test_the_endpoint_answers_only_get_metrics_and_the_status_page(oxgate):
    server = oxgate("metrics_app", "--metrics-bind", "127.0.0.1:0")
    addr = endpoint(server)
    assert get(addr, "/metrics?x=1").status_code == 200
    for method, path in [("GET", "/nope"), ("POST", "/metrics"), ("GET", "/metrics/x")]:
        assert get(addr, path, method).status_code == 404, (method, path)
    # A client that sends a head forever is cut off, and the master keeps serving.
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /" + b"a" * 8192)
        assert sock.recv(100).startswith(b"HTTP/1.1 431 ")
    assert get(addr, "/").status_code == 200
    # The app's own port knows nothing of it.
    assert httpx.get(f"http://127.0.0.1:{server.port}/metrics").text == "ok"


def test_metrics_are_off_by_default_and_unix_addresses_are_refused(oxgate):
    server = oxgate("metrics_app")
    wait_ready(server, 1)
    assert "Metrics at:" not in server.stderr_text()
    bad = run_oxgate(["metrics_app", "--metrics-bind", "unix:/tmp/m.sock"])
    assert bad.returncode == 2, bad.stderr
    assert "--metrics-bind" in bad.stderr and "a TCP HOST:PORT" in bad.stderr, bad.stderr


def test_a_metrics_port_in_use_stops_the_master_before_any_worker_boots():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_oxgate(
            ["metrics_app", "--bind", "127.0.0.1:0", "--metrics-bind", f"127.0.0.1:{port}"]
        )
    assert result.returncode == 3, result.stderr
    assert f"cannot bind --metrics-bind 127.0.0.1:{port}" in result.stderr, result.stderr
    assert "Booting worker" not in result.stderr


# --- the status page ----------------------------------------------------------------------------


def test_status_page_shows_workers_and_escapes_an_in_flight_path(oxgate):
    server = oxgate("metrics_app", "-w", "2", "--threads", "2", "--metrics-bind", "127.0.0.1:0")
    workers = wait_ready(server, 2)
    addr = endpoint(server)
    held = hold(server.port, "/sleep/<script>alert(1)</script>?s=2")
    wait_until(
        lambda: "&lt;script&gt;alert(1)&lt;/script&gt;" in status_page(addr),
        10,
        lambda: status_page(addr),
    )
    page = status_page(addr)
    assert "<script>" not in page
    assert '<meta http-equiv="refresh" content="2">' in page
    for pid in workers:
        assert f"<td>{pid}</td>" in page, page
    assert "http://" not in page and "https://" not in page, "no external assets"
    held.join(15)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    chromium() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_headless_chromium_renders_the_status_page_to_a_png(oxgate, tmp_path: Path):
    server = oxgate("metrics_app", "-w", "2", "--threads", "2", "--metrics-bind", "127.0.0.1:0")
    wait_ready(server, 2)
    addr = endpoint(server)
    send_on_new_connections(server.port, [("GET", "/"), ("POST", "/status/500")])
    held = hold(server.port, "/sleep/report?s=3")
    wait_until(lambda: "/sleep/report" in status_page(addr), 10, "the held request on the page")
    shot = tmp_path / "status.png"
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,900",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            f"http://{addr}/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, len(data)
    keep = os.environ.get("OXGATE_STATUS_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
    held.join(15)
