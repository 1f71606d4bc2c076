"""Measuring one server run: a free port, readiness by a real GET, wrk pinned to
CPU 1 and its output parsed, and the server's process tree read from /proc (CPU
ticks and RSS). Starts no server itself; never sends traffic off 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pinned import rss_kib

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, path: str, alive: Callable[[], bool], timeout: float = 60.0) -> None:
    """Until a GET of `path` answers 200 (or 2xx), or raise RuntimeError."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("server exited before it was ready")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if 200 <= resp.status < 300:
                return
            last = f"status {resp.status}"
        except (OSError, http.client.HTTPException) as e:
            last = repr(e)
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {timeout:g} s: {last}")


# --- /proc ------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """Fields 3.. of /proc/PID/stat (after the command name, which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                children.setdefault(int(_stat(int(p.name))[1]), []).append(int(p.name))
            except (OSError, IndexError):
                continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(root: int) -> dict[int, int]:
    """utime + stime (stat fields 14 and 15) of `root` and every descendant."""
    ticks = {}
    for pid in descendants(root):
        try:
            f = _stat(pid)
            ticks[pid] = int(f[11]) + int(f[12])
        except (OSError, IndexError):
            continue
    return ticks


def rss_split(root: int) -> tuple[int, int | None]:
    """(workers' VmRSS sum, master's VmRSS or None) in KiB. A root with children is
    a master; its descendants are the workers. Without children, root is the worker."""
    pids = descendants(root)
    try:
        if len(pids) == 1:
            return rss_kib(root), None
        return sum(rss_kib(p) for p in pids[1:]), rss_kib(root)
    except OSError:
        return 0, None


# --- wrk --------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())


def to_ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError(value)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))  # wrk pads "1.10s "
    req = re.search(r"^\s*(\d+) requests in", out, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not (req and rps and "50" in lat and "99" in lat):
        raise RuntimeError(f"unparsable wrk output:\n{out}")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        requests=int(req.group(1)),
        rps=float(rps.group(1)),
        p50_ms=to_ms(lat["50"]),
        p99_ms=to_ms(lat["99"]),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups())))
        if sock
        else {},
    )


def wrk_cmd(url: str, connections: int, seconds: int, script: Path | None) -> list[str]:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    return [*cmd, url]


def post_script(size: int, folder: Path) -> Path:
    """A wrk script in `folder` that POSTs a body of `size` bytes on every request."""
    script = folder / "post.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = string.rep("x", {size})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )
    return script


def run_wrk(cmd: list[str], seconds: float) -> WrkResult:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode:
        raise RuntimeError(f"wrk exited {out.returncode}: {out.stderr.strip()[-300:]}")
    return parse_wrk(out.stdout)


@dataclass
class Sample:
    """One measured rep: wrk's numbers and the server's CPU per request."""

    wrk: WrkResult
    cpu_us_per_req: float
    lost_pids: int  # processes that were there before wrk and gone after (CPU undercounted)


def measured(cmd: list[str], seconds: float, server_pid: int | None) -> Sample:
    before = cpu_ticks(server_pid) if server_pid else {}
    result = run_wrk(cmd, seconds)
    after = cpu_ticks(server_pid) if server_pid else {}
    used = sum(t - before.get(pid, 0) for pid, t in after.items())
    cpu_us = used / TICK * 1e6 / result.requests if server_pid and result.requests else 0.0
    return Sample(result, cpu_us, len(before.keys() - after.keys()))
