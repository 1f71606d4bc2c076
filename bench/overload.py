"""Overload run (issue 5): an open-loop client at a multiple of the sustainable
rate against a slow Django view under one oxgate worker. Reports the answered
requests' latency, how many were refused with 503 and how fast, and the worker's
RSS over time. Traffic stays on 127.0.0.1 and is bounded by --seconds.

    python bench/overload.py [--threads 4] [--view-ms 20] [--factor 10] [--seconds 10]

Needs: oxgate installed in this Python, Django (tests/requirements.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pinned import Oxgate, rss_kib

REPO = Path(__file__).resolve().parent.parent


async def one(port: int, path: str, results: list) -> None:
    t0 = time.perf_counter()
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else -1
    except OSError:
        status = -2
    results.append((status, time.perf_counter() - t0))


async def drive(port: int, rate: float, seconds: float, path: str, worker: int) -> tuple:
    results: list = []
    rss = []
    tasks = []
    start = time.perf_counter()
    n = 0
    next_rss = start
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate)
        while n < due:
            tasks.append(asyncio.ensure_future(one(port, path, results)))
            n += 1
        if now >= next_rss:
            rss.append(rss_kib(worker))
            next_rss += 1.0
        await asyncio.sleep(0.001)
    done, stuck = await asyncio.wait(tasks, timeout=30)
    for t in stuck:
        t.cancel()
    results.extend((-3, 30.0) for _ in stuck)
    rss.append(rss_kib(worker))
    return results, rss


def pct(xs: list[float], q: int) -> float:
    if len(xs) < 2:
        return xs[0] if xs else float("nan")
    return statistics.quantiles(xs, n=100)[q - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--view-ms", type=int, default=20)
    ap.add_argument("--factor", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--queue", type=int, default=0, help="--request-queue (0: oxgate's default)")
    args = ap.parse_args()

    site = Path(tempfile.mkdtemp()) / "django_site"
    shutil.copytree(REPO / "examples" / "django_site", site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=site, env=env, check=True)
    oxgate_args = ["--threads", str(args.threads), "--chdir", str(site), "--backlog", "4096"]
    if args.queue:
        oxgate_args += ["--request-queue", str(args.queue)]
    oxgate_args.append("mysite.wsgi")
    try:
        server = Oxgate(oxgate_args, env=env)
        sustainable = args.threads * 1000 / args.view_ms
        rate = sustainable * args.factor
        path = f"/api/slow?ms={args.view_ms}"
        os.sched_setaffinity(0, {1})
        with server:
            results, rss = asyncio.run(drive(server.port, rate, args.seconds, path, server.worker))
    finally:
        shutil.rmtree(site.parent, ignore_errors=True)
    ok = [t for s, t in results if s == 200]
    refused = [t for s, t in results if s == 503]
    other = [s for s, _ in results if s not in (200, 503)]
    print(
        f"threads {args.threads}, view {args.view_ms} ms: sustainable {sustainable:.0f} req/s, "
        f"offered {rate:.0f} req/s ({args.factor:g}x) for {args.seconds:g} s"
    )
    print(
        f"answered 200: {len(ok)} ({len(ok) / args.seconds:.0f}/s)  p50 {pct(ok, 50) * 1e3:.1f} ms"
        f"  p99 {pct(ok, 99) * 1e3:.1f} ms  max {max(ok, default=0) * 1e3:.1f} ms"
    )
    print(
        f"refused 503: {len(refused)}  p50 {pct(refused, 50) * 1e3:.2f} ms"
        f"  p99 {pct(refused, 99) * 1e3:.2f} ms (client-side, incl. connect)"
    )
    print(f"other outcomes: {len(other)} {sorted(set(other))}")
    print(f"worker RSS, KiB, once a second: {rss}")


if __name__ == "__main__":
    main()
