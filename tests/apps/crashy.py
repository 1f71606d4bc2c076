"""Routes that hurt the worker serving them, for the prefork master tests.

GET /pid[?delay=S]  {"pid", "count", "multiprocess", "multithread"}: which worker answered,
                    and how many requests this worker process has served (this one included);
                    sleeps S seconds first if asked
GET /exit?code=N    the worker process exits at once with code N (os._exit)
GET /segv           the worker process kills itself with SIGSEGV
GET /sleep?s=SECS   sleeps (default: an hour), then answers "slept"
GET /busy           spins forever in pure Python, holding the GIL most of the time

Every request records `started:PATH:PID` (and `finished:PATH:PID`) in the events file,
and the import records `imported:PID`.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from urllib.parse import parse_qs

from _events import record

_lock = threading.Lock()
_count = 0

record(f"imported:{os.getpid()}")


def _sleep_forever(seconds: float) -> None:
    time.sleep(seconds)


def _spin_forever() -> None:
    n = 0
    while True:
        n += 1


def _reply(start_response, body: bytes, content_type: str = "text/plain"):
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    global _count
    path = environ.get("PATH_INFO", "")
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    with _lock:
        _count += 1
        count = _count
    pid = os.getpid()
    record(f"started:{path}:{pid}")
    if path == "/exit":
        os._exit(int(qs.get("code", "1")))
    elif path == "/segv":
        os.kill(pid, signal.SIGSEGV)
        time.sleep(10)  # the signal is delivered before this returns
    elif path == "/sleep":
        _sleep_forever(float(qs.get("s", "3600")))
        body = b"slept"
    elif path == "/busy":
        _spin_forever()
    else:
        if "delay" in qs:
            time.sleep(float(qs["delay"]))
        body = json.dumps(
            {
                "pid": pid,
                "count": count,
                "multiprocess": environ["wsgi.multiprocess"],
                "multithread": environ["wsgi.multithread"],
            }
        ).encode()
        record(f"finished:{path}:{pid}")
        return _reply(start_response, body, "application/json")
    record(f"finished:{path}:{pid}")
    return _reply(start_response, body)
