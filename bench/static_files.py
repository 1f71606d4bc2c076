"""Static files side by side: oxgate's --static-map, whitenoise inside an app served by
oxgate, and nginx, each pinned to CPU 0 with wrk on CPU 1, on the same 24 KiB file.
Prints a markdown table: requests/s (median of --reps) and server CPU per request.

    .venv-bench/bin/python bench/static_files.py [--duration 5] [--reps 3]

Needs what `bash bench/install.sh full` installs (wrk, nginx, whitenoise).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import free_port, measured, wait_ready, wrk_cmd
from peers import NGINX_CONF
from pinned import Oxgate

BENCH = Path(__file__).resolve().parent
FILE = "app.css"

# nginx serving the same directory with sendfile (the rest of its config is
# the benchmark's usual one, bench/peers.py).
NGINX_HTTP = """\
    sendfile on;
    tcp_nopush on;
    types { text/css css; }
"""
NGINX_LOCATION = """\
        location /static/ {{
            alias {root}/;
            etag on;
            add_header Cache-Control "public, max-age=60";
        }}
"""


def run(url: str, pid: int, duration: int, reps: int) -> tuple[float, float]:
    samples = [measured(wrk_cmd(url, 64, duration, None), duration, pid) for _ in range(reps)]
    for s in samples:
        if s.wrk.errors:
            raise SystemExit(f"{url}: {s.wrk.errors} errors")
    rps = statistics.median(s.wrk.rps for s in samples)
    cpu = statistics.median(s.cpu_us_per_req for s in samples)
    return rps, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx's workers run as another user when we are root
        root = tmp / "static"
        root.mkdir()
        (root / FILE).write_bytes(b"body { margin: 0; color: #222; }\n" * 745)
        apps = {"cwd": str(BENCH / "apps")}
        with Oxgate(["--static-map", f"/static={root}", "benchapps:hello"], **apps) as ox:
            url = f"http://127.0.0.1:{ox.port}/static/{FILE}"
            rows.append(("oxgate --static-map", *run(url, ox.proc.pid, args.duration, args.reps)))
        env = {**os.environ, "OXGATE_BENCH_STATIC": str(root)}
        with Oxgate(["benchapps:whitenoise_static"], env=env, **apps) as ox:
            url = f"http://127.0.0.1:{ox.port}/static/{FILE}"
            rows.append(("whitenoise in oxgate", *run(url, ox.proc.pid, args.duration, args.reps)))
        port = free_port()
        conf = tmp / "nginx.conf"
        location = NGINX_LOCATION.format(root=root)
        conf.write_text(
            NGINX_CONF.format(workers=1, tmp=tmp, port=port, http=NGINX_HTTP, location=location)
        )
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / d).mkdir()
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        proc = subprocess.Popen(["taskset", "-c", "0", nginx, "-c", str(conf), "-p", str(tmp)])
        try:
            wait_ready(port, f"/static/{FILE}", lambda: proc.poll() is None)
            url = f"http://127.0.0.1:{port}/static/{FILE}"
            rows.append(("nginx", *run(url, proc.pid, args.duration, args.reps)))
        finally:
            proc.terminate()
            proc.wait(30)
    best = max(r[1] for r in rows)
    print(f"{FILE}, 24 KiB, wrk -t1 -c64 -d{args.duration}s, median of {args.reps}:\n")
    print("| server | req/s | server CPU µs/req | ÷ best |")
    print("|---|---|---|---|")
    for name, rps, cpu in rows:
        print(f"| {name} | {rps:,.0f} | {cpu:.1f} | {rps / best:.2f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
