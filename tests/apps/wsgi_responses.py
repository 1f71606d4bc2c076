"""One route per response behaviour of PEP 3333; events go to $OXGATE_TEST_EVENTS.

Every iterable it returns records `close:<path>` when the server calls close().
"""

from __future__ import annotations

import io
import sys
import time
from urllib.parse import parse_qs

from _events import record

TEXT = [("Content-Type", "text/plain")]


class ClosingIterable:
    """Yields `items`; raises at index `raise_at`; records close()."""

    def __init__(self, name, items, raise_at=None, delay=0.0):
        self.name = name
        self.items = list(items)
        self.raise_at = raise_at
        self.delay = delay
        self.index = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.index == self.raise_at:
            raise RuntimeError(f"oxgate-test: iteration failed in {self.name}")
        if self.index >= len(self.items):
            raise StopIteration
        if self.delay:
            time.sleep(self.delay)
        item = self.items[self.index]
        self.index += 1
        return item

    def close(self):
        record(f"close:{self.name}")


class BodyReader(ClosingIterable):
    """Reads wsgi.input while iterated (a streaming consumer); yields the byte count.

    A failed read records `read-error:<type>` and propagates, as an app would.
    """

    def __init__(self, name, stream):
        super().__init__(name, [])
        self.stream = stream

    def __next__(self):
        if self.index:
            raise StopIteration
        self.index = 1
        total = 0
        try:
            while piece := self.stream.read(65536):
                total += len(piece)
        except Exception as e:
            record(f"read-error:{type(e).__name__}")
            raise
        return b"read %d bytes" % total


class CloseRaises(ClosingIterable):
    """Iterates fine; its close() records, then raises."""

    def close(self):
        super().close()
        raise RuntimeError(f"oxgate-test: close failed in {self.name}")


class ClosingList(list):
    """A sequence (it has a len(), so a single item can get a Content-Length) with close()."""

    def __init__(self, name, items):
        super().__init__(items)
        self.name = name

    def close(self):
        record(f"close:{self.name}")


class LazyBadHeaders:
    """Calls start_response with an invalid header only when first iterated."""

    def __init__(self, name, start_response):
        self.name = name
        self.start_response = start_response

    def __iter__(self):
        self.start_response("200 OK", [("X-Bad", "a\r\nX-Injected: yes")])
        yield b"must not be sent"

    def close(self):
        record(f"close:{self.name}")


class TrackedFile(io.BufferedReader):
    """A real file (it has a fileno, so sendfile applies) that records its close()."""

    def close(self):
        if not self.closed:
            record("file-closed")
        super().close()


class FileLike:
    """No fileno(): the server must iterate it in blocks with read(blksize)."""

    def __init__(self, data: bytes):
        self._buf = io.BytesIO(data)

    def read(self, size=-1):
        record(f"filelike-read:{size}")
        return self._buf.read(size)

    def close(self):
        record("filelike-closed")


BAD_RESPONSES = {
    # kind: (status, headers)
    "cr-in-value": ("200 OK", [("X-Bad", "a\rX-Injected: yes")]),
    "lf-in-value": ("200 OK", [("X-Bad", "a\nX-Injected: yes")]),
    "crlf-in-value": ("200 OK", [("X-Bad", "a\r\nX-Injected: yes")]),
    "nul-in-value": ("200 OK", [("X-Bad", "a\x00b")]),
    "crlf-in-name": ("200 OK", [("X-Injected: yes\r\nX-Bad", "v")]),
    "non-latin1-value": ("200 OK", [("X-Bad", "price \u20ac")]),
    "surrogate-value": ("200 OK", [("X-Bad", "a\ud800b")]),
    "surrogate-status": ("200 \udcff", []),
    "bytes-name": ("200 OK", [(b"X-Bad", "v")]),
    "bytes-value": ("200 OK", [("X-Bad", b"v")]),
    "int-value": ("200 OK", [("X-Bad", 5)]),
    "not-a-pair": ("200 OK", [("X-Bad", "v", "extra")]),
    "headers-not-a-list": ("200 OK", {"X-Bad": "v"}),
    "crlf-in-status": ("200 OK\r\nX-Injected: yes", []),
    "bytes-status": (b"200 OK", []),
    "non-numeric-status": ("OK 200", []),
    "empty-status": ("", []),
}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    qs = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    record(f"called:{path}")

    if path == "/single":
        start_response("200 OK", TEXT)
        return ClosingList(path, [b"single item body"])

    if path == "/latin1-header":
        start_response("200 OK", [*TEXT, ("X-Latin", "caf\u00e9 \u00ff")])
        return [b"latin-1"]

    if path == "/single-list":
        start_response("200 OK", TEXT)
        return [b"single item body"]

    if path == "/bad-lazy":
        return LazyBadHeaders(path, start_response)

    if path == "/generator":
        start_response("200 OK", TEXT)
        return ClosingIterable(path, [b"one,", b"two,", b"", b"three"])

    if path == "/write":
        write = start_response("200 OK", TEXT)
        write(b"written-")
        return ClosingIterable(path, [b"returned"])

    if path == "/start-response-without-headers":
        start_response("200 OK")
        return [b"must not be sent"]

    if path == "/write-str":
        write = start_response("200 OK", TEXT)
        write("not bytes")
        return [b"must not be sent"]

    if path == "/write-only":
        write = start_response("200 OK", TEXT)
        write(b"only ")
        write(b"written")
        return ClosingIterable(path, [])

    if path == "/cl-longer-body":
        # declares 5 bytes, produces more: only 5 may go out
        start_response("200 OK", [*TEXT, ("Content-Length", "5")])
        return ClosingIterable(path, [b"hel", b"lo, extra bytes", b"never sent"])

    if path == "/cl-shorter-body":
        # declares 100 bytes, produces 10: the connection must close after them
        start_response("200 OK", [*TEXT, ("Content-Length", "100")])
        return ClosingIterable(path, [b"0123456789"])

    if path == "/status":
        code = qs.get("code", "200")
        reasons = {"204": "No Content", "304": "Not Modified", "200": "OK"}
        start_response(f"{code} {reasons.get(code, 'Other')}", TEXT)
        return ClosingIterable(path, [b"this body must not be sent"])

    if path.startswith("/bad/"):
        kind = path[len("/bad/") :]
        status, headers = BAD_RESPONSES[kind]
        start_response(status, headers)
        return ClosingIterable(path, [b"must not be sent"])

    if path == "/exc-info-before-headers":
        start_response("200 OK", [*TEXT, ("X-Discarded", "yes")])
        try:
            raise ValueError("oxgate-test: recovered before headers")
        except ValueError:
            start_response(
                "503 Service Unavailable", [*TEXT, ("X-Replaced", "yes")], sys.exc_info()
            )
        record("exc-info-before:replaced")
        return ClosingIterable(path, [b"replaced response"])

    if path == "/exc-info-after-headers":

        def gen():
            start_response("200 OK", TEXT)
            yield b"first part;"
            try:
                raise ValueError("oxgate-test: late error")
            except ValueError:
                try:
                    start_response("500 Internal Server Error", TEXT, sys.exc_info())
                except ValueError:
                    record("exc-info-after:reraised")
                    raise
                record("exc-info-after:not-reraised")
            yield b"must not be sent"

        return gen()

    if path == "/start-response-twice":
        start_response("200 OK", TEXT)
        try:
            start_response("200 OK", TEXT)
        except Exception as e:
            record(f"twice:raised:{type(e).__name__}")
            raise
        record("twice:not-raised")
        return [b"second start_response accepted"]

    if path == "/raise-before-headers":
        raise RuntimeError("oxgate-test: exception before headers")

    if path == "/raise-in-first-next":
        start_response("200 OK", TEXT)
        return ClosingIterable(path, [b"never"], raise_at=0)

    if path == "/raise-midway":
        start_response("200 OK", TEXT)
        return ClosingIterable(path, [b"partial;", b"never"], raise_at=1)

    if path == "/raise-midway-cl":
        start_response("200 OK", [*TEXT, ("Content-Length", "100")])
        return ClosingIterable(path, [b"partial;", b"never"], raise_at=1)

    if path == "/raise-midway-http10":
        start_response("200 OK", TEXT)
        return ClosingIterable(path, [b"partial;", b"never"], raise_at=1)

    if path == "/endless":
        start_response("200 OK", TEXT)
        # ~100 s of output (~1.3 GB at ?delay=0): close() within seconds can only come
        # from the disconnect
        chunk = b"x" * 65536
        return ClosingIterable(path, [chunk] * 20000, delay=float(qs.get("delay", "0.005")))

    if path == "/write-endless":
        # the old write() API; a failed write() raises out of the app
        write = start_response("200 OK", TEXT)
        chunk = b"x" * 65536
        try:
            for _ in range(20000):
                write(chunk)
        except OSError as e:
            record(f"write-error:{type(e).__name__}")
            raise
        return []

    if path == "/read-body":
        start_response("200 OK", TEXT)
        return BodyReader(path, environ["wsgi.input"])

    if path == "/close-raises":
        start_response("200 OK", TEXT)
        return CloseRaises(path, [b"body;", b"complete"])

    if path == "/file":
        f = TrackedFile(io.FileIO(qs["path"], "rb"))
        offset = int(qs.get("offset", "0"))
        f.seek(offset)
        headers = list(TEXT)
        if qs.get("cl") == "1":
            size = f.raw.seek(0, io.SEEK_END) - offset
            f.raw.seek(offset)
            f.seek(offset)
            headers.append(("Content-Length", str(size)))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 8192)

    if path == "/filelike":
        data = b"".join(b"block%02d;" % i for i in range(10))
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](FileLike(data), 7)

    if path == "/wsgi-errors":
        errors = environ["wsgi.errors"]
        errors.write("oxgate-test wsgi.errors write marker\n")
        errors.writelines(["oxgate-test wsgi.errors ", "writelines marker\n"])
        errors.flush()
        start_response("200 OK", TEXT)
        return [b"logged"]

    if path == "/no-start-response":
        return ClosingIterable(path, [b"start_response was never called"])

    if path == "/str-body":
        start_response("200 OK", TEXT)
        return ClosingIterable(path, ["a str, not bytes"])

    if path == "/str-body-midway":
        start_response("200 OK", TEXT)
        return ClosingIterable(path, [b"bytes first;", "then a str"])

    if path == "/none":
        start_response("200 OK", TEXT)
        return None

    if path == "/int":
        start_response("200 OK", TEXT)
        return 42

    if path == "/empty-generator":
        start_response("200 OK", TEXT)
        return ClosingIterable(path, [])

    if path == "/empty-list":
        start_response("200 OK", TEXT)
        return []

    if path == "/many-chunks":
        start_response("200 OK", TEXT)
        return ClosingIterable(path, [b"%04d," % i for i in range(2000)])

    if path == "/big":
        size = int(qs.get("size", "0"))
        start_response("200 OK", TEXT)
        return [bytes(range(256)) * (size // 256) + b"x" * (size % 256)]

    if path == "/set-cookies":
        start_response(
            "200 OK",
            [*TEXT, ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/"), ("X-Dup", "1")],
        )
        return [b"cookies"]

    if path == "/own-request-id":
        start_response("200 OK", [*TEXT, ("x-request-id", "chosen-by-the-app")])
        return [b"own id"]

    if path == "/custom-status":
        start_response("299 Entirely Custom Reason", TEXT)
        return [b"custom"]

    start_response("404 Not Found", TEXT)
    return [b"no such route: " + path.encode("latin-1")]
