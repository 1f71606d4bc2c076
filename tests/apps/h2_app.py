"""The app of tests/test_http2.py: one view per HTTP/2 behaviour; events go to
$OXGATE_TEST_EVENTS, streaming progress to $OXGATE_TEST_PROGRESS.

/              b"hello"
/env, /env/*   the environ as JSON (values made JSON-safe), with "_body": what
               wsgi.input.read() gave (latin-1)
/echo          the request body back with a Content-Length; ?chunk=N reads it in
               read(N) pieces
/noread        never touches wsgi.input: records noread:start, sleeps ?ms=, records
               noread:end, answers b"ignored"
/stream        ?n=N&size=S: N chunks of pattern(S); after each chunk is taken, the bytes
               handed over so far are written to $OXGATE_TEST_PROGRESS
/file          ?size=S: S bytes of pattern through wsgi.file_wrapper
/slow          ?ms=M&id=I: records slow:start:I, sleeps M ms, answers {"id": I}
/fail-early    raises before start_response
/fail-midway   ?n=N: N chunks of 16 KiB, then raises
/closing       ?n=N&ms=M&tag=T: an iterable with close(): N chunks of 1 KiB, M ms apart;
               records yield:T:i for each, closed:T at close()
/write         ?n=N&ms=M&tag=T: the same through start_response's write(); a failing
               write records write-failed:T:<exception type>; close() records closed:T
/headers       a mixed-case header and every connection-specific one
/sized         GET or HEAD: 1000 bytes with a Content-Length
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from urllib.parse import parse_qs

from _events import record

TEXT = [("Content-Type", "text/plain")]


def pattern(n: int) -> bytes:
    """`n` bytes that differ from position to position, so a shifted byte shows."""
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def _safe(value):
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (tuple, list)):
        return [_safe(v) for v in value]
    return f"<{type(value).__name__}>"


def _query(environ) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _progress(total: int) -> None:
    path = os.environ.get("OXGATE_TEST_PROGRESS")
    if path:
        with open(path + ".tmp", "w", encoding="ascii") as f:
            f.write(str(total))
        os.replace(path + ".tmp", path)


class Closing:
    """`n` chunks of 1 KiB, `ms` apart; records each one taken and close()."""

    def __init__(self, tag: str, n: int, ms: int):
        self.tag, self.n, self.ms, self.i = tag, n, ms, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.i >= self.n:
            raise StopIteration
        time.sleep(self.ms / 1000)
        record(f"yield:{self.tag}:{self.i}")
        self.i += 1
        return pattern(1024)

    def close(self):
        record(f"closed:{self.tag}")


class ClosedOnly:
    """An empty iterable whose close() is recorded."""

    def __init__(self, tag: str):
        self.tag = tag

    def __iter__(self):
        return iter(())

    def close(self):
        record(f"closed:{self.tag}")


def _stream(n: int, size: int):
    chunk = pattern(size)
    _progress(0)
    for i in range(n):
        yield chunk
        # Reached only when the server asks for the next chunk: chunk i was taken.
        _progress((i + 1) * size)


def _fail_midway(n: int):
    for _ in range(n):
        yield pattern(16384)
    raise RuntimeError("oxgate-test: failed midway")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    if path == "/env" or path.startswith("/env/"):
        body = environ["wsgi.input"].read()
        out = {k: _safe(v) for k, v in environ.items()}
        out["_body"] = body.decode("latin-1")
        data = json.dumps(out, sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    if path == "/echo":
        inp = environ["wsgi.input"]
        chunk = int(q.get("chunk", "0"))
        if chunk:
            parts = []
            while part := inp.read(chunk):
                parts.append(part)
            body = b"".join(parts)
        else:
            body = inp.read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/noread":
        record("noread:start")
        time.sleep(int(q.get("ms", "0")) / 1000)
        record("noread:end")
        start_response("200 OK", TEXT)
        return [b"ignored"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _stream(int(q.get("n", "16")), int(q.get("size", "65536")))
    if path == "/file":
        size = int(q.get("size", str(1 << 20)))
        f = tempfile.TemporaryFile()
        f.write(pattern(size))
        f.seek(0)
        start_response("200 OK", [("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/slow":
        record(f"slow:start:{q.get('id')}")
        time.sleep(int(q.get("ms", "100")) / 1000)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"id": q.get("id")}).encode()]
    if path == "/fail-early":
        raise RuntimeError("oxgate-test: failed before start_response")
    if path == "/fail-midway":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _fail_midway(int(q.get("n", "4")))
    if path == "/closing":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Closing(q.get("tag", "c"), int(q.get("n", "100")), int(q.get("ms", "50")))
    if path == "/write":
        tag = q.get("tag", "w")
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        for i in range(int(q.get("n", "100"))):
            time.sleep(int(q.get("ms", "50")) / 1000)
            try:
                write(pattern(1024))
            except Exception as e:  # what the server raises is what the test checks
                record(f"write-failed:{tag}:{type(e).__name__}")
                break
            record(f"write:{tag}:{i}")
        return ClosedOnly(tag)
    if path == "/headers":
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("X-Mixed-Case", "Kept"),
                ("Connection", "keep-alive"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("Upgrade", "h2c"),
                ("Proxy-Connection", "keep-alive"),
            ],
        )
        return [b"headers"]
    if path == "/sized":
        start_response("200 OK", [*TEXT, ("Content-Length", "1000")])
        return [b"s" * 1000]
    start_response("200 OK", TEXT)
    return [b"hello"]
