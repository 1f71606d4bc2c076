"""A crowd of slow and idle clients, run as its own process so it never competes
with the measuring test for the GIL.

    python slow_crowd.py PORT SLOWLORIS IDLE [SLICES]

Opens SLOWLORIS connections that send a request head one byte a second (never
finishing it) and IDLE keep-alive connections that made one request and then
wait. Prints `ready` once all are open, drips until stdin closes, then prints a
JSON line: how many of each the server closed meanwhile.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import sys
import time

HEAD = b"GET /slow HTTP/1.1\r\nHost: crowd\r\nX-Drip: "
REQUEST = b"GET / HTTP/1.1\r\nHost: crowd\r\n\r\n"


def open_idle(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(REQUEST)
    data = b""
    while not data.endswith(b"ok"):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("idle client: the server closed before answering")
        data += chunk
    s.setblocking(False)
    return s


def open_slow(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(HEAD[:1])
    s.setblocking(False)
    return s


def main() -> None:
    port, slow_n, idle_n = (int(a) for a in sys.argv[1:4])
    # The drip is spread over the second in this many slices, as independent
    # clients' bytes would be (1 = every connection's byte in one burst).
    slices = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    # Each connection is a descriptor; the usual soft limit (1024) is too low.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = slow_n + idle_n + 64
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit(f"slow_crowd: needs {need} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    slow = [open_slow(port) for _ in range(slow_n)]
    idle = [open_idle(port) for _ in range(idle_n)]
    sent = {id(s): 1 for s in slow}
    closed = {"slowloris": 0, "idle": 0}
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    # An idle connection turning readable means the server closed it (EOF).
    for s in idle:
        sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    tick = 0
    next_tick = time.monotonic()
    while True:
        for key, _ in sel.select(timeout=max(0.0, next_tick - time.monotonic())):
            if key.fileobj is sys.stdin:
                for s in slow + idle:
                    s.close()
                print(json.dumps(closed), flush=True)
                return
            sel.unregister(key.fileobj)
            idle.remove(key.fileobj)
            key.fileobj.close()
            closed["idle"] += 1
        if time.monotonic() < next_tick:
            continue
        next_tick += 1.0 / slices
        for s in list(slow[tick % slices :: slices]):
            n = sent[id(s)]
            byte = HEAD[n : n + 1] or b"a"
            try:
                s.send(byte)
                sent[id(s)] = n + 1
            except OSError:
                closed["slowloris"] += 1
                slow.remove(s)
                s.close()
        tick += 1


if __name__ == "__main__":
    main()
