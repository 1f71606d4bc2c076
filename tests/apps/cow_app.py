"""A large graph of long-lived objects made at import (as a framework leaves), and
the worker's private dirty memory around a request; /collect runs a full gc.collect()
in between."""

from __future__ import annotations

import gc
import json

GRAPH = [{"k": [i, str(i)], "n": None} for i in range(200_000)]


def private_dirty_kib() -> int:
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    raise RuntimeError("no Private_Dirty in /proc/self/smaps_rollup")


def application(environ, start_response):
    before = private_dirty_kib()
    if environ["PATH_INFO"] == "/collect":
        gc.collect()
    body = json.dumps({"before": before, "after": private_dirty_kib()}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
