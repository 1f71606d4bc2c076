"""oxgate side by side with its peers (issue: the benchmark harness). For each
scenario and server: start the server (1 worker, access log off, pinned to CPU
0), wait for a real 200, warm up, run wrk pinned to CPU 1 --reps times, read the
server's CPU and RSS from /proc, stop it. Plus the ceilings: nginx answering the
same 13 bytes, and the apps called in-process. Writes JSON, then the report.

    python bench/compare.py [--duration 10] [--reps 3] [--interleave] [--only-servers a,b]
                            [--only-scenarios x,y] [--out DIR] [--docs DIR]
    python bench/compare.py --report-only [--out DIR] [--docs DIR]

Run it with `make bench` (installs everything into .venv-bench first). Every
server it starts is stopped on exit, on errors and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import measure
import report
from peers import APPS, BENCH, SCENARIOS, SERVERS, Scenario, Server

REPO = BENCH.parent
# Seconds between wrk runs against one server.
SETTLE = 0.5
CEILINGS = [
    ("hello", "benchapps:hello", "/"),
    ("django-json", "benchdjango:application", "/json"),
    ("django-template", "benchdjango:application", "/template"),
]


class Running:
    """A server in its own session; TERM to its whole process group on exit, then KILL."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path):
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=APPS,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def __enter__(self) -> Running:
        return self

    def _gone(self, seconds: float) -> bool:
        """Whether the whole process group is gone within `seconds` (workers may
        outlive their master for a moment)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.proc.poll()  # reap the leader, or its zombie keeps the group alive
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False

    def __exit__(self, *exc: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            if self._gone(10):
                break
        self.proc.wait()
        self.log.close()


def tail(path: Path, lines: int = 3) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def server_env(tmp: Path, first: str = "") -> dict[str, str]:
    """What a server of a run is started with: bench/apps on PYTHONPATH (after `first`,
    an oxgate build), Django's settings, the file scenario's file (`write_bench_file`),
    and Python's output unbuffered, so a failed server's log says why."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [first, str(APPS)])),
        "DJANGO_SETTINGS_MODULE": "djsite.settings",
        "BENCH_FILE": str(tmp / "10m.bin"),
        "PYTHONUNBUFFERED": "1",
    }


def write_bench_file(tmp: Path) -> None:
    with (tmp / "10m.bin").open("wb") as f:
        f.write(os.urandom(10 * 1024 * 1024))


def pinned_command(server: Server, app: str, port: int, workers: int, tmp: Path) -> list[str] | str:
    """`server`'s command line, pinned as every run pins it (one worker: CPU 0, where
    wrk does not run), or why it cannot run."""
    cmd = server.command(app, port, workers, tmp)
    if isinstance(cmd, str):
        return cmd
    return ["taskset", "-c", "0" if workers == 1 else "0,1", *cmd]


def run_one(sc: Scenario, server: Server, args: argparse.Namespace, tmp: Path, n: int) -> dict:
    """Start `server`, warm it up, measure `n` reps of `sc`, stop it."""
    row: dict[str, Any] = {"scenario": sc.name, "server": server.name}
    if (why := server.missing()) is not None:
        return {**row, "status": "skipped", "reason": why}
    port = measure.free_port()
    cmd = pinned_command(server, sc.app, port, sc.workers, tmp)
    if isinstance(cmd, str):
        return {**row, "status": "skipped", "reason": cmd}
    conns = sc.connections or args.connections
    script = BENCH / "wrk" / sc.script if sc.script else None
    url = f"http://127.0.0.1:{port}{sc.path}"
    wrk = measure.wrk_cmd(url, conns, args.duration, script)
    row.update(command=shlex.join(cmd), wrk=shlex.join(wrk), pinned=sc.workers == 1)
    env = server_env(tmp)
    log = tmp / f"{sc.name}-{server.name}.log"
    try:
        with Running(cmd, env, log) as srv:
            measure.wait_ready(port, sc.path, srv.alive)
            if args.warmup > 0:
                measure.run_wrk(measure.wrk_cmd(url, conns, args.warmup, script), args.warmup)
            reps = []
            for _ in range(n):
                # wrk leaves up to `conns` requests behind when it stops; let every
                # server finish them before the next run counts (a server with a
                # bounded queue would otherwise refuse the newcomers).
                time.sleep(SETTLE)
                reps.append(measure.measured(wrk, args.duration, srv.proc.pid))
            rss, master = measure.rss_split(srv.proc.pid)
            exited = srv.proc.poll()
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        return {**row, "status": "failed", "reason": f"{e} -- log: {tail(log)}"}
    if exited is not None:
        return {
            **row,
            "status": "failed",
            "reason": f"server exited during the run (code "
            f"{exited}) after {sum(r.wrk.requests for r in reps)} requests -- log: {tail(log)}",
        }
    if idle := [r for r in reps if not r.wrk.requests]:
        return {
            **row,
            "status": "failed",
            "reason": f"wrk completed no request in {len(idle)} "
            f"of {len(reps)} reps (server hung?) -- log: {tail(log)}",
        }
    med = statistics.median
    return {
        **row,
        "status": "ok",
        "reps": [asdict(r) for r in reps],
        "rps": med(r.wrk.rps for r in reps),
        "p50_ms": med(r.wrk.p50_ms for r in reps),
        "p99_ms": med(r.wrk.p99_ms for r in reps),
        "cpu_us_per_req": med(r.cpu_us_per_req for r in reps),
        "errors": sum(r.wrk.errors for r in reps),
        "requests": sum(r.wrk.requests for r in reps),
        "lost_pids": sum(r.lost_pids for r in reps),
        "rss_kib": rss,
        "master_rss_kib": master,
    }


def merge_rounds(rows: list[dict]) -> dict:
    """One row from a server's rounds of one scenario (--interleave): the reps of all
    rounds, their medians; the first round that did not succeed, if any."""
    if bad := [r for r in rows if r["status"] != "ok"]:
        return bad[0]
    med = statistics.median
    reps = [rep for r in rows for rep in r["reps"]]
    return {
        **rows[-1],
        "reps": reps,
        "rps": med(x["wrk"]["rps"] for x in reps),
        "p50_ms": med(x["wrk"]["p50_ms"] for x in reps),
        "p99_ms": med(x["wrk"]["p99_ms"] for x in reps),
        "cpu_us_per_req": med(x["cpu_us_per_req"] for x in reps),
        "errors": sum(r["errors"] for r in rows),
        "requests": sum(r["requests"] for r in rows),
        "lost_pids": sum(r["lost_pids"] for r in rows),
    }


def merge_ceilings(runs: list[dict]) -> dict:
    """One ceiling from its rounds: the medians, or the first failure."""
    if bad := [r for r in runs if r["status"] != "ok"]:
        return bad[0]
    med = statistics.median
    return {
        **runs[-1],
        "rounds_us_per_call": [round(r["us_per_call"], 2) for r in runs],
        "calls_per_s": med(r["calls_per_s"] for r in runs),
        "us_per_call": med(r["us_per_call"] for r in runs),
    }


def run_scenario(
    sc: Scenario,
    names: list[str],
    args: argparse.Namespace,
    tmp: Path,
    ceiling_run: Callable[[], dict] | None = None,
) -> tuple[list[dict], dict | None]:
    """Every chosen server on `sc`, then its Python ceiling if it has one. With
    --interleave, rep by rep in turn (each server started afresh each round, the
    ceiling run once a round), so a noisy minute on a shared machine lands on every
    server instead of on the one that happened to run then."""
    servers = [
        s for s in SERVERS if s.name in names and not (s.ceiling and not sc.ceiling_only_hello)
    ]
    rounds, per_round = (args.reps, 1) if args.interleave else (1, args.reps)
    got: dict[str, list[dict]] = {s.name: [] for s in servers}
    ceilings: list[dict] = []
    for _ in range(rounds):
        for server in servers:
            done = got[server.name]
            if done and done[-1]["status"] != "ok":
                continue  # skipped or failed: once is enough
            done.append(run_one(sc, server, args, tmp, per_round))
        if ceiling_run and not (ceilings and ceilings[-1]["status"] != "ok"):
            ceilings.append(ceiling_run())
    rows = [merge_rounds(got[s.name]) for s in servers]
    return rows, merge_ceilings(ceilings) if ceilings else None


def ceiling(scenario: str, app: str, path: str, seconds: float) -> dict:
    cmd = [
        "taskset",
        "-c",
        "0",
        sys.executable,
        str(BENCH / "ceiling.py"),
        app,
        path,
        f"{seconds:g}",
    ]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "djsite.settings"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode:
        return {"scenario": scenario, "status": "failed", "reason": out.stderr.strip()[-300:]}
    return {
        "scenario": scenario,
        "status": "ok",
        "command": shlex.join(cmd),
        **json.loads(out.stdout),
    }


def ceiling_run(scenario: str, args: argparse.Namespace) -> Callable[[], dict] | None:
    """One run of `scenario`'s Python ceiling, if it has one and it is wanted."""
    if args.no_ceiling:
        return None
    for name, app, path in CEILINGS:
        if name == scenario:
            return lambda: ceiling(name, app, path, args.duration)
    return None


def version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not found"
    return (out.stdout + out.stderr).strip().splitlines()[0] if out.stdout + out.stderr else "?"


def meta(args: argparse.Namespace) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for pkg in (
        "oxgate",
        "django",
        "gunicorn",
        "granian",
        "pyuwsgi",
        "waitress",
        "bjoern",
        "fastwsgi",
        "meinheld",
        "matplotlib",
    ):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    versions["wrk"] = version_of(["wrk", "-v"])
    versions["nginx"] = version_of(["nginx", "-v"])
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "kernel": Path("/proc/sys/kernel/osrelease").read_text().strip(),
        },
        "versions": versions,
        "git": version_of(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
        "options": {
            k: getattr(args, k) for k in ("duration", "reps", "connections", "warmup", "interleave")
        },
    }


def pick(names: str | None, known: list[str]) -> list[str]:
    if not names:
        return known
    chosen = names.split(",")
    if unknown := set(chosen) - set(known):
        raise SystemExit(f"unknown: {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    return [n for n in known if n in chosen]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk rep")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=1, help="seconds of discarded wrk (0: none)")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="run the servers of a scenario rep by rep in turn, each started per rep",
    )
    ap.add_argument("--only-servers", help=f"comma list of {','.join(s.name for s in SERVERS)}")
    ap.add_argument("--only-scenarios", help=f"comma list of {','.join(s.name for s in SCENARIOS)}")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the in-process Python loop")
    ap.add_argument("--out", type=Path, default=BENCH / "results", help="where latest.json goes")
    ap.add_argument("--docs", type=Path, default=REPO / "docs", help="benchmarks.md/png; '-': none")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a run or ceiling failed")
    args = ap.parse_args()
    result_file = args.out / "latest.json"
    if not args.report_only:
        # TERM (e.g. from a CI timeout) unwinds like Ctrl-C, so every server is stopped.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignored
        servers = pick(args.only_servers, [s.name for s in SERVERS])
        scenarios = pick(args.only_scenarios, [s.name for s in SCENARIOS])
        results = {
            "meta": meta(args),
            "scenarios": [asdict(s) for s in SCENARIOS if s.name in scenarios],
        }
        results["runs"], results["ceilings"] = [], []
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="oxgate-bench-") as tmp_s:
            tmp = Path(tmp_s)
            write_bench_file(tmp)
            for sc in (s for s in SCENARIOS if s.name in scenarios):
                rows, ceil = run_scenario(sc, servers, args, tmp, ceiling_run(sc.name, args))
                for row in rows:
                    results["runs"].append(row)
                    print(report.one_line(row), flush=True)
                if ceil:
                    results["ceilings"].append(ceil)
                    print(report.ceiling_line(ceil), flush=True)
        results["meta"]["elapsed_s"] = round(time.monotonic() - started)
        args.out.mkdir(parents=True, exist_ok=True)
        result_file.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {result_file} ({results['meta']['elapsed_s']} s)")
    if str(args.docs) != "-":
        results = json.loads(result_file.read_text())
        report.write(results, args.docs)
        print(f"wrote {args.docs}/benchmarks.md and benchmarks.png")
    if args.strict:
        results = json.loads(result_file.read_text())
        failed = [
            f"{r['scenario']}/{r.get('server', 'python ceiling')}"
            for r in results["runs"] + results["ceilings"]
            if r["status"] == "failed"
        ]
        if failed:
            raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
