"""For tests/test_metrics.py: /status/CODE answers CODE, /sleep... holds the request
for ?s=SECONDS (any path under /sleep, so odd paths can be seen in flight), /pid
names the worker; anything else is 200."""

from __future__ import annotations

import os
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    status = "200 OK"
    body = b"ok"
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        status = f"{code} Status {code}"
    elif path.startswith("/sleep"):
        time.sleep(min(float(qs.get("s", "1")), 10.0))
        body = b"slept"
    elif path == "/pid":
        body = str(os.getpid()).encode()
    start_response(status, [("Content-Type", "text/plain")])
    return [body]
