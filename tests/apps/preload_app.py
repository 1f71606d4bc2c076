"""Reports the pid that imported it and the pid serving: equal unless preloaded."""

from __future__ import annotations

import json
import os

IMPORTED_IN = os.getpid()


def application(environ, start_response):
    body = json.dumps(
        {
            "imported_in": IMPORTED_IN,
            "pid": os.getpid(),
            "multiprocess": environ["wsgi.multiprocess"],
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
