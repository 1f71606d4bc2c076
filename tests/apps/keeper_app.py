"""An app that keeps its request's wsgi.input and start_response past the request
(`/keep`) and uses them during a later one (`/kept`), to show that a connection's
next request gets its own objects and that kept ones are inert."""

from __future__ import annotations

import json

KEPT: dict = {}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    # /keep leaves most of its body unread, for the kept stream to show.
    size = 2 if path == "/keep" else -1
    out = {"body": environ["wsgi.input"].read(size).decode("latin-1")}
    if path == "/keep":
        KEPT["input"] = environ["wsgi.input"]
        KEPT["start"] = start_response
    if path == "/kept":
        out["kept_is_current"] = KEPT["input"] is environ["wsgi.input"]
        out["kept_body"] = KEPT["input"].read().decode("latin-1")
        out["kept_start_is_current"] = KEPT["start"] is start_response
        try:
            KEPT["start"](b"from an old request")
            out["kept_write"] = "sent"
        except Exception as e:  # noqa: BLE001 - the type is what the test checks
            out["kept_write"] = type(e).__name__
    data = json.dumps(out).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
