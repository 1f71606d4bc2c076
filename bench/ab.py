"""Two oxgate builds (or settings, or oxgate and a peer) side by side: both up at once on
CPU 0, wrk on CPU 1 alternating between them a few seconds at a time, the order swapped
every round. A slow minute of a shared machine then falls on both sides alike, and the
paired ratio of each round says more than two separate runs: quote its median and how
many rounds it won.

    # a build against the installed one, Django JSON
    python bench/ab.py --b-path /tmp/new-wheel --app benchdjango:application --path /json
    # one build, a setting against another
    python bench/ab.py --a-args "--threads 1" --b-args "--threads 4"
    # oxgate against bjoern (any server of bench/peers.py)
    python bench/ab.py --b-server bjoern --app benchdjango:application --path /json

A side's --X-path is put first on PYTHONPATH (an unzipped wheel: `unzip -d DIR x.whl`);
without it the side runs the oxgate installed for --python. A peer side runs as `make
bench` starts it (with --X-args ignored), and its CPU is its whole process tree's. Run it
with nothing else busy: an A/A run (the same build on both sides) shows what the
machine's noise alone gives, and its ratio should be about 1 with about half the rounds
won.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from compare import Running, pinned_command, server_env, write_bench_file
from measure import Sample, free_port, measured, post_script, wait_ready, wrk_cmd
from peers import APPS, SERVERS
from pinned import Oxgate


class Peer:
    """A server of bench/peers.py on CPU 0, as `make bench` starts it; stopped on exit."""

    def __init__(self, name: str, app: str, path: str, env: dict[str, str], tmp: Path):
        server = next((s for s in SERVERS if s.name == name), None)
        if server is None:
            raise SystemExit(f"unknown server {name}: one of {', '.join(s.name for s in SERVERS)}")
        if (why := server.missing()) is not None:
            raise SystemExit(f"{name} cannot run here: {why}")
        self.port = free_port()
        cmd = pinned_command(server, app, self.port, 1, tmp)
        if isinstance(cmd, str):
            raise SystemExit(f"{name}: {cmd}")
        self.running = Running(cmd, env, tmp / f"{name}-{self.port}.log")
        try:
            wait_ready(self.port, path, self.running.alive)
        except RuntimeError:
            self.running.__exit__()
            raise
        self.worker = self.running.proc.pid

    def __exit__(self, *exc: object) -> None:
        self.running.__exit__()


def side(args: argparse.Namespace, name: str, tmp: Path) -> Oxgate | Peer:
    env = server_env(tmp, getattr(args, f"{name}_path"))
    for pair in getattr(args, f"{name}_env"):
        key, _, value = pair.partition("=")
        env[key] = value
    server = getattr(args, f"{name}_server")
    if server != "oxgate":
        return Peer(server, args.app, args.path, env, tmp)
    extra = shlex.split(getattr(args, f"{name}_args"))
    oxgate_args = ["--workers", "1", *extra, "--chdir", str(APPS), args.app]
    return Oxgate(oxgate_args, python=args.python, env=env, cwd=str(APPS))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--python", default=sys.executable, help="interpreter that runs oxgate")
    p.add_argument("--app", default="benchapps:hello", help="app in bench/apps")
    p.add_argument("--path", default="/", help="request path")
    p.add_argument("--post", type=int, default=0, help="POST a body of this many bytes")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--seconds", type=int, default=2, help="of wrk per side per round")
    p.add_argument("--rounds", type=int, default=20)
    for name in ("a", "b"):
        p.add_argument(f"--{name}-path", default="", help="put first on PYTHONPATH")
        p.add_argument(f"--{name}-env", action="append", default=[], help="KEY=VALUE")
        p.add_argument(f"--{name}-args", default="--threads 1", help="oxgate options")
        p.add_argument(
            f"--{name}-server", default="oxgate", help="oxgate, or a server of bench/peers.py"
        )
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="oxgate-ab-") as tmp:
        script = post_script(args.post, Path(tmp)) if args.post else None
        if args.app == "benchapps:file":
            write_bench_file(Path(tmp))
        servers = {"A": side(args, "a", Path(tmp))}
        try:
            servers["B"] = side(args, "b", Path(tmp))
            samples: dict[str, list[Sample]] = {"A": [], "B": []}

            def run(name: str, seconds: int) -> Sample:
                url = f"http://127.0.0.1:{servers[name].port}{args.path}"
                cmd = wrk_cmd(url, args.connections, seconds, script)
                return measured(cmd, seconds, servers[name].worker)

            for name in servers:  # warm-up, not counted
                run(name, 1)
            for i in range(args.rounds):
                for name in ("A", "B") if i % 2 == 0 else ("B", "A"):
                    samples[name].append(run(name, args.seconds))
        finally:
            for server in servers.values():
                server.__exit__()
    for name, got in samples.items():
        rps = statistics.median(s.wrk.requests / args.seconds for s in got)
        cpu = statistics.median(s.cpu_us_per_req for s in got)
        p50 = statistics.median(s.wrk.p50_ms for s in got)
        p99 = statistics.median(s.wrk.p99_ms for s in got)
        print(f"{name}: {rps:,.0f} req/s, {cpu:.1f} us CPU/req, p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    pairs = [b.cpu_us_per_req / a.cpu_us_per_req for a, b in zip(samples["A"], samples["B"])]
    won = sum(r < 1 for r in pairs)
    print(
        f"B/A CPU per request: median {statistics.median(pairs):.3f}, "
        f"B lower in {won} of {len(pairs)} rounds "
        f"(spread {min(pairs):.2f}-{max(pairs):.2f})"
    )


if __name__ == "__main__":
    main()
