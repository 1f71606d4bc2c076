"""What the bench scripts share: an oxgate pinned to CPU 0 with its port and its
worker, and /proc readings of it."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_of(master: int) -> int:
    """The one worker of `master`, once it exists."""
    for _ in range(100):
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                        return int(p.name)
                except OSError:
                    continue
        time.sleep(0.1)
    raise SystemExit(f"oxgate {master} started no worker")


class Oxgate:
    """`python -m oxgate --bind 127.0.0.1:0 ARGS` on CPU 0 (or under another
    `launcher`, with another `python`); stopped on exit."""

    def __init__(
        self,
        args: list[str],
        launcher: tuple[str, ...] = ("taskset", "-c", "0"),
        python: str = sys.executable,
        **popen,
    ):
        cmd = [python, "-m", "oxgate", "--bind", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen([*launcher, *cmd], stderr=subprocess.PIPE, text=True, **popen)
        self.port = 0
        for line in self.proc.stderr:
            if m := re.search(r"Listening at: http://127.0.0.1:(\d+)", line):
                self.port = int(m.group(1))
            if "Worker ready" in line:
                break
        if not self.port:
            raise SystemExit(f"oxgate did not start: {' '.join(cmd)}")
        # Keep draining the log, or a full pipe would stall the server.
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        self.worker = worker_of(self.proc.pid)

    def __enter__(self) -> Oxgate:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(60)
