"""Reports the pid that imported it and the pid serving (equal unless preloaded), and
how many objects the garbage collector has frozen (gc.freeze())."""

from __future__ import annotations

import gc
import json
import os

IMPORTED_IN = os.getpid()


def application(environ, start_response):
    body = json.dumps(
        {
            "imported_in": IMPORTED_IN,
            "pid": os.getpid(),
            "multiprocess": environ["wsgi.multiprocess"],
            "frozen": gc.get_freeze_count(),
            # Set by tests/test_preload_daemon.py's post_fork hook, when given.
            "frozen_at_fork": int(os.environ.get("FROZEN_AT_FORK", "-1")),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
