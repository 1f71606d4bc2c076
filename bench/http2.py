"""HTTP/2 side by side: hello over h2c (prior knowledge) from h2load, against oxgate
and granian (`--http 2`), with oxgate over HTTP/1.1 from the same load generator
(`h2load --h1`) for scale. Each server is pinned to CPU 0 and h2load to CPU 1.
Prints a markdown table: requests/s and server CPU per request, medians of --reps.

    .venv-bench/bin/python bench/http2.py [--requests 100000] [--reps 3]

Needs h2load (Debian's nghttp2-client; `bash bench/install.sh full` installs it) and
granian in the bench venv.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from measure import TICK, cpu_ticks, free_port
from peers import VENV_BIN
from pinned import Oxgate

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "apps"


def h2load(url: str, requests: int, conns: int, streams: int, h1: bool) -> tuple[float, int]:
    """requests/s and the requests that got a 2xx."""
    cmd = ["taskset", "-c", "1", "h2load", "-n", str(requests), "-c", str(conns)]
    cmd += ["-m", str(streams), *(["--h1"] if h1 else []), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    rps = re.search(r"finished in .*?, ([\d.]+) req/s", out)
    ok = re.search(r"status codes: (\d+) 2xx", out)
    if not rps or not ok:
        raise SystemExit(f"h2load said:\n{out[-600:]}")
    return float(rps.group(1)), int(ok.group(1))


def wait_h2(url: str, alive, timeout: float = 60.0) -> None:
    """Until one h2c request to `url` gets a 2xx (granian --http 2 takes no HTTP/1.1)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise SystemExit("the server exited before it was ready")
        out = subprocess.run(["h2load", "-n", "1", url], capture_output=True, text=True).stdout
        if "status codes: 1 2xx" in out:
            return
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout:g} s")


def run(url: str, pid: int, args: argparse.Namespace, load: tuple[int, int], h1: bool):
    samples = []
    for _ in range(args.reps):
        before = cpu_ticks(pid)
        rps, ok = h2load(url, args.requests, *load, h1)
        after = cpu_ticks(pid)
        if ok != args.requests:
            raise SystemExit(f"{url}: {args.requests - ok} requests without a 2xx")
        used = sum(t - before.get(p, 0) for p, t in after.items())
        samples.append((rps, used / TICK * 1e6 / ok))
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    loads = [(16, 10), (64, 1)]  # connections, concurrent streams per connection
    rows: list[tuple[str, str, float, float]] = []
    # A queue with room for every stream of the run: overload is not measured here.
    queue = ["--request-queue", "1024"]
    for threads in (1, 4):
        name = f"oxgate --threads {threads}"
        with Oxgate([*queue, "--threads", str(threads), "benchapps:hello"], cwd=APPS) as ox:
            url = f"http://127.0.0.1:{ox.port}/"
            for c, m in loads:
                rows.append((name, f"h2c -c{c} -m{m}", *run(url, ox.proc.pid, args, (c, m), False)))
            if threads == 1:
                rows.append((name, "HTTP/1.1 -c64", *run(url, ox.proc.pid, args, (64, 1), True)))
    port = free_port()
    cmd = [str(VENV_BIN / "granian"), "--interface", "wsgi", "--http", "2", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1", "--no-access-log", "benchapps:hello"]
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd], cwd=APPS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_h2(url, lambda: proc.poll() is None)
        for c, m in loads:
            rows.append(
                ("granian --http 2", f"h2c -c{c} -m{m}", *run(url, proc.pid, args, (c, m), False))
            )
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"hello, h2load -n {args.requests}, median of {args.reps}:\n")
    print("| server | protocol, load | req/s | server CPU µs/req |")
    print("|---|---|---|---|")
    for name, load, rps, cpu in rows:
        print(f"| {name} | {load} | {rps:,.0f} | {cpu:.1f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
