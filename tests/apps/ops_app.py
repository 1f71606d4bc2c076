"""Routes for the master operations tests (memory limit, privileges, sockets).

Only `os` is imported (no `from __future__` either): with --user nobody the workers
may not be able to read the standard library's files, so the app imports nothing the
master has not already loaded.

GET /pid      {"pid": P, "ppid": PP, "held_mib": N}: which worker (and master) answered
GET /grow     keeps 20 MiB more (touched, so resident) in a module-level list
GET /ids      {"uid", "gid", "euid", "egid", "umask", "pid"} of the worker
"""

import os

_held: list[bytearray] = []

_MIB = 1 << 20


def _json(start_response, pairs: dict[str, int]):
    body = ("{" + ", ".join(f'"{k}": {v}' for k, v in pairs.items()) + "}").encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/grow":
        # bytearray * n writes every byte: the pages are resident, not just reserved
        _held.append(bytearray(b"\x01") * (20 * _MIB))
    elif path == "/ids":
        old = os.umask(0)
        os.umask(old)
        return _json(
            start_response,
            {
                "uid": os.getuid(),
                "gid": os.getgid(),
                "euid": os.geteuid(),
                "egid": os.getegid(),
                "umask": old,
                "pid": os.getpid(),
            },
        )
    held = sum(len(b) for b in _held) // _MIB
    return _json(start_response, {"pid": os.getpid(), "ppid": os.getppid(), "held_mib": held})
