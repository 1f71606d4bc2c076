"""Instructions per request of one oxgate worker, counted by callgrind.

Wall-clock A/Bs on a shared 2-core VM move by 10-15% between back-to-back runs;
callgrind counts user-space instructions, which repeat to well under 1% for the same
build whatever else the machine does. It cannot see the kernel (recv, send, epoll),
so it measures exactly the part of a request that oxgate's code and Python decide.

Two runs of the same server under valgrind, each driven by wrk for a different time
and then stopped (the worker writes its counts when it exits):

    per request = (instructions of the long run - of the short run)
                  / (requests of the long run - of the short run)

which takes out start-up, app loading and shutdown. The worker's counts are also
grouped by the object they ran in (_oxgate's Rust, libpython, libc, ...) and its
costliest functions listed.

    python bench/instructions.py                      # hello, 16 connections
    python bench/instructions.py --app benchapps:echo --post 65536
    python bench/instructions.py --python .venv-3.11/bin/python -- --threads 4
    python bench/instructions.py --python .venv-bench/bin/python --server fastwsgi
    python bench/instructions.py --python .venv-bench/bin/python --build /tmp/new-wheel

Needs valgrind and wrk; the oxgate (or peer) of --python's environment is measured, or
the build --build names (`unzip -d DIR x.whl` of a wheel for that Python).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from measure import free_port, post_script, wait_ready
from pinned import Oxgate

APPS = Path(__file__).resolve().parent / "apps"


def start(args: argparse.Namespace, out: Path) -> tuple[subprocess.Popen, int, int]:
    """The server under callgrind: (its process, its port, the pid serving)."""
    valgrind = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p")
    # A fixed hash seed: dict probing, and so Python's counts, repeat.
    path = os.pathsep.join(filter(None, [args.build, str(APPS)]))
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": path}
    if args.server != "oxgate":
        port = free_port()
        launch = [str(APPS.parent / "launch.py"), args.server, args.app, str(port)]
        proc = subprocess.Popen([*valgrind, args.python, *launch], env=env)
        wait_ready(port, args.path, lambda: proc.poll() is None, timeout=120)
        return proc, port, proc.pid
    oxgate_args = ["--chdir", str(APPS), *args.oxgate_args, args.app]
    server = Oxgate(oxgate_args, launcher=valgrind, python=args.python, env=env)
    return server.proc, server.port, server.worker


def run_once(args: argparse.Namespace, seconds: float, out: Path) -> tuple[int, int]:
    """Serve under callgrind, drive with wrk for `seconds`; (worker instructions, requests)."""
    out.mkdir(parents=True, exist_ok=True)
    proc, port, worker = start(args, out)
    try:
        # Under valgrind a first request can take seconds (lazy imports).
        wrk = ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds:g}s", "--timeout", "60s"]
        if args.post:
            wrk += ["-s", str(post_script(args.post, out))]
        done = subprocess.run(
            [*wrk, f"http://127.0.0.1:{port}{args.path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if "Non-2xx" in done or "Socket errors" in done:
            raise SystemExit(f"wrk saw errors:\n{done}")
        m = re.search(r"(\d+) requests in", done)
        if not m:
            raise SystemExit(f"no request count in wrk's output:\n{done}")
        requests = int(m.group(1))
    finally:
        proc.terminate()
        proc.wait(120)
    counts = out / f"cg.{worker}"
    for _ in range(100):
        text = counts.read_text() if counts.exists() else ""
        if m := re.search(r"^totals: (\d+)", text, re.M):
            return int(m.group(1)), requests
        time.sleep(0.1)
    raise SystemExit(f"callgrind wrote no totals to {counts}")


def breakdown(short: Path, long: Path, requests: int, top: int) -> None:
    """Per request, by object and by function: the long run's counts less the short's."""

    def table(out: Path) -> dict[tuple[str, str], int]:
        # The worker's file is the larger of the two (master and worker).
        path = max(out.glob("cg.*"), key=lambda p: p.stat().st_size)
        text = subprocess.run(
            ["callgrind_annotate", "--threshold=100", "--show-percs=no", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows: dict[tuple[str, str], int] = defaultdict(int)
        for line in text.splitlines():
            m = re.match(r"\s*([\d,]+)\s+(?:\(.*?\)\s+)?(\S.*?)\s+\[(.+)\]\s*$", line)
            if m:
                fn = m.group(2).split(":", 1)[-1]
                rows[(Path(m.group(3)).name, fn)] += int(m.group(1).replace(",", ""))
        return rows

    a, b = table(short), table(long)
    delta = {k: (b.get(k, 0) - a.get(k, 0)) / requests for k in set(a) | set(b)}
    by_object: dict[str, float] = defaultdict(float)
    for (obj, _), v in delta.items():
        by_object[obj] += v
    print("\nper request, by object:")
    for obj, v in sorted(by_object.items(), key=lambda kv: -kv[1]):
        if abs(v) >= 10:
            print(f"  {v:10.0f}  {obj}")
    print(f"\nper request, the {top} costliest functions (self):")
    for (obj, fn), v in sorted(delta.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {v:10.0f}  {fn[:90]}  [{obj}]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--python", default=sys.executable, help="interpreter with oxgate installed")
    p.add_argument("--app", default="benchapps:hello", help="app in bench/apps")
    p.add_argument(
        "--server",
        default="oxgate",
        choices=["oxgate", "bjoern", "fastwsgi"],
        help="oxgate, or a peer started by bench/launch.py (one process)",
    )
    p.add_argument(
        "--build",
        default="",
        help="put first on PYTHONPATH: an oxgate build (an unzipped wheel) to measure",
    )
    p.add_argument("--path", default="/", help="request path")
    p.add_argument("--post", type=int, default=0, help="POST a body of this many bytes")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--short", type=float, default=3, help="seconds of the short run")
    p.add_argument("--long", type=float, default=12, help="seconds of the long run")
    p.add_argument("--top", type=int, default=25, help="functions to list")
    p.add_argument("--keep", help="keep callgrind's files in this folder")
    p.add_argument("oxgate_args", nargs="*", help="after --: more oxgate options")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="oxgate-cg-") as tmp:
        if args.keep:
            tmp = args.keep
        short_i, short_n = run_once(args, args.short, Path(tmp, "short"))
        long_i, long_n = run_once(args, args.long, Path(tmp, "long"))
        requests = long_n - short_n
        if requests <= 0:
            raise SystemExit(f"the long run served no more requests ({short_n}, {long_n})")
        print(f"short run: {short_i:,} instructions, {short_n:,} requests")
        print(f"long run:  {long_i:,} instructions, {long_n:,} requests")
        print(f"per request: {(long_i - short_i) / requests:,.0f} instructions")
        breakdown(Path(tmp, "short"), Path(tmp, "long"), requests, args.top)


if __name__ == "__main__":
    main()
