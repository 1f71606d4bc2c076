"""Slow-client run (issue 5): a normal client's latency with and without a crowd
of 1000 slowloris connections (a byte a second each) and 1000 idle keep-alive
connections, against one oxgate worker with one app thread; and the worker's
memory per held connection. Traffic stays on 127.0.0.1, bounded in time.

    python bench/slow_clients.py [--crowd 1000] [--seconds 5] [--runs 3]

The server is pinned to CPU 0; wrk (one connection, sequential requests) and the
crowd to CPU 1. Needs wrk (Debian: apt-get install wrk) and oxgate in this Python.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pinned import Oxgate, rss_kib

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "tests" / "apps"
CROWD = REPO / "tests" / "slow_crowd.py"


def to_ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not m:
        raise ValueError(value)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    return float(m.group(1)) * scale


def wrk(port: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c1", f"-d{seconds:g}s", "--latency",
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"p50": to_ms(found["50"]), "p99": to_ms(found["99"]), "rps": rps}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--crowd", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--slices", type=int, default=100, help="the drip spread over the second in N bursts"
    )
    args = ap.parse_args()
    args_ = ["--threads", "1", "--worker-connections", str(3 * args.crowd),
             "--header-timeout", "600", "--keep-alive", "600", "slow_clients_app"]  # fmt: skip
    with Oxgate(args_, cwd=APPS) as server:
        port, worker = server.port, server.worker
        wrk(port, 1)  # warm-up
        quiet, loaded = [], []
        for _ in range(args.runs):
            quiet.append(wrk(port, args.seconds))
        rss_before = rss_kib(worker)
        crowd = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, str(CROWD), str(port), str(args.crowd),
             str(args.crowd), str(args.slices)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert crowd.stdout.readline().strip() == "ready"
        time.sleep(1)
        rss_crowd = rss_kib(worker)
        for _ in range(args.runs):
            loaded.append(wrk(port, args.seconds))
        out, _ = crowd.communicate("stop\n", timeout=60)
    med = {k: statistics.median(r[k] for r in quiet) for k in ("p50", "p99", "rps")}
    medl = {k: statistics.median(r[k] for r in loaded) for k in ("p50", "p99", "rps")}
    print(
        f"crowd: {args.crowd} slowloris (in {args.slices} bursts a second) + {args.crowd} idle;"
        f" closed by the server: {out.strip()}"
    )
    print(f"quiet : p50 {med['p50']:.3f} ms  p99 {med['p99']:.3f} ms  {med['rps']:.0f} req/s")
    print(f"crowd : p50 {medl['p50']:.3f} ms  p99 {medl['p99']:.3f} ms  {medl['rps']:.0f} req/s")
    print(f"p99 ratio crowd/quiet: {medl['p99'] / med['p99']:.2f} (medians of {args.runs} runs)")
    per = (rss_crowd - rss_before) * 1024 / (2 * args.crowd)
    print(f"worker RSS {rss_before} -> {rss_crowd} KiB: {per:.0f} bytes per held connection")


if __name__ == "__main__":
    main()
