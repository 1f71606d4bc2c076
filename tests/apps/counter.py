"""Counts its calls, so tests can prove the app was NOT called for a refused request.

GET /__calls__ answers {"calls": N} and is not counted itself.
"""

from __future__ import annotations

import json
import threading

_lock = threading.Lock()
_calls = 0


def application(environ, start_response):
    global _calls
    if environ.get("PATH_INFO") == "/__calls__":
        with _lock:
            data = json.dumps({"calls": _calls}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    with _lock:
        _calls += 1
    body = environ["wsgi.input"].read()
    data = f"ok {environ['REQUEST_METHOD']} {environ.get('PATH_INFO')} {len(body)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [data]
