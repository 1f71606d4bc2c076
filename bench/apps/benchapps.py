"""The WSGI callables every server in bench/compare.py serves, one per scenario.
Plain PEP 3333 code with no server-specific paths."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, Callable

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

HELLO = b"Hello, World!"
CHUNK = b"x" * 65536
CHUNKS = 16  # 16 x 64 KiB = 1 MiB


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


def echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Reads wsgi.input to the end (PEP 3333: at most CONTENT_LENGTH) and returns it."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _chunks() -> Iterator[bytes]:
    for _ in range(CHUNKS):
        yield CHUNK


def chunks_cl(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    size = str(CHUNKS * len(CHUNK))
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", size)]
    )
    return _chunks()


def chunks(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """No Content-Length: HTTP/1.1 servers send it chunked (RFC 9112 7.1)."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _chunks()


def file(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """BENCH_FILE through wsgi.file_wrapper (PEP 3333, "Optional Platform-Specific File
    Handling"); a plain read loop where the server has none."""
    path = os.environ["BENCH_FILE"]
    f = open(path, "rb")  # the server closes it through the wrapper
    size = os.fstat(f.fileno()).st_size
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
    )
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None:
        return iter(lambda: f.read(65536), b"")
    return wrapper(f, 65536)


def whitenoise_static(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """hello behind whitenoise serving $OXGATE_BENCH_STATIC at /static/ (bench/static_files.py)."""
    return _whitenoise()(environ, start_response)


_WHITENOISE: list[Callable[..., Any]] = []


def _whitenoise() -> Callable[..., Any]:
    if not _WHITENOISE:
        from whitenoise import WhiteNoise

        root = os.environ["OXGATE_BENCH_STATIC"]
        _WHITENOISE.append(WhiteNoise(hello, root=root, prefix="static/", max_age=60))
    return _WHITENOISE[0]
