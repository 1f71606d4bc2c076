"""Exercises wsgi.input the way the query string says, and reports every piece it got.

?op=read | read_n&n=N | readline | readline_n&n=N | readlines&hint=N | iter | none
After the op, "after" is one more read(): it must be '' (nothing past the body).
Bytes are carried as latin-1 strings in the JSON answer; "refs" has each piece's
reference count, one higher for a piece some other object (the server) still holds.
"""

from __future__ import annotations

import json
import sys
from urllib.parse import parse_qs


def _drain(call, limit=10000):
    pieces = []
    for _ in range(limit):
        piece = call()
        if not piece:
            pieces.append(piece)
            break
        pieces.append(piece)
    return pieces


def application(environ, start_response):
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    op = qs.get("op", "read")
    n = int(qs.get("n", "0") or 0)
    inp = environ["wsgi.input"]
    pieces: list = []
    after = None
    if op == "read":
        pieces = [inp.read()]
    elif op == "read_n":
        pieces = _drain(lambda: inp.read(n))
    elif op == "read_once":
        pieces = [inp.read(n)]
    elif op == "read_none":
        pieces = [inp.read(None)]
    elif op == "read_negative":
        pieces = [inp.read(-1)]
    elif op == "readline":
        pieces = _drain(inp.readline)
    elif op == "readline_n":
        pieces = _drain(lambda: inp.readline(n))
    elif op == "readlines":
        pieces = inp.readlines(int(qs["hint"])) if "hint" in qs else inp.readlines()
    elif op == "iter":
        pieces = list(inp)
    if op != "none":
        after = inp.read()
    result = {
        "op": op,
        "pieces": [p.decode("latin-1") for p in pieces],
        "types": sorted({type(p).__name__ for p in pieces}),
        "refs": [sys.getrefcount(p) for p in pieces],
        "after": None if after is None else after.decode("latin-1"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "input_terminated": environ.get("wsgi.input_terminated"),
        "http_keys": sorted(k for k in environ if k.startswith("HTTP_")),
    }
    data = json.dumps(result).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]
