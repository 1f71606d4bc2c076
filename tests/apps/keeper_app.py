"""An app that keeps its request's wsgi.input and start_response past the request
(`/keep`) and uses them during a later one (`/kept`), to show that a connection's
next request gets its own objects and that kept ones are inert. `/keep-write`
keeps only the `write` callable start_response returned, `/kept-write` uses it."""

from __future__ import annotations

import json

KEPT: dict = {}


def write_with(kept) -> str:
    """Write through a callable kept from an earlier request: "sent", or what it raised."""
    try:
        kept(b"from an old request")
    except Exception as e:  # noqa: BLE001 - the type is what the test checks
        return type(e).__name__
    return "sent"


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
        out["kept_write"] = write_with(KEPT["start"])
    if path == "/kept-write":
        write = start_response("200 OK", [("Content-Type", "application/json")])
        out["kept_write_is_current"] = KEPT["write"] is write
        out["kept_write"] = write_with(KEPT["write"])
        return [json.dumps(out).encode()]
    data = json.dumps(out).encode()
    write = start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    if path == "/keep-write":
        KEPT["write"] = write
    return [data]
