"""The app of tests/test_tls.py: every kind of response body, and the TLS part of the environ.

/            b"hello"
/env         JSON of the keys TLS sets (and REMOTE_ADDR/PORT: which client, which connection)
/echo        the request body back, read with wsgi.input.read()
/stream      ?n=N&size=S: N chunks of S bytes from a generator (no length: chunked)
/file        ?size=S: S bytes of a temp file through wsgi.file_wrapper
"""

from __future__ import annotations

import json
import tempfile
from urllib.parse import parse_qs

ENV_KEYS = (
    "wsgi.url_scheme",
    "HTTPS",
    "SERVER_PORT",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SSL_CLIENT_VERIFY",
    "SSL_CLIENT_S_DN",
    "SSL_CLIENT_CERT",
)


def pattern(n: int) -> bytes:
    """`n` bytes that differ from position to position, so a shifted byte shows."""
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def _query(environ) -> dict[str, int]:
    q = parse_qs(environ.get("QUERY_STRING", ""))
    return {k: int(v[0]) for k, v in q.items()}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    if path == "/env":
        body = json.dumps({k: environ.get(k) for k in ENV_KEYS}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        n, size = q.get("n", 16), q.get("size", 65536)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        chunk = pattern(size)
        return (chunk for _ in range(n))
    if path == "/file":
        size = q.get("size", 1 << 20)
        f = tempfile.TemporaryFile()
        f.write(pattern(size))
        f.seek(0)
        start_response("200 OK", [("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](f, 65536)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
