"""Replay tests/corpus/http/ against a real oxgate, every case with every split:
all at once, byte by byte, line by line, and random pieces (seeded per case)."""

from __future__ import annotations

import json
import random
import re
import select
import socket
import zlib
from pathlib import Path

import pytest
from support import OxgateProcess, RawConnection, base_env

CORPUS = Path(__file__).resolve().parent / "corpus" / "http"
VALID = sorted((CORPUS / "valid").glob("*.http"))
INVALID = sorted((CORPUS / "invalid").glob("*.http"))
RANDOM_SEEDS = 3
SPLITS = ("whole", "bytes", "lines", *(f"random{k}" for k in range(RANDOM_SEEDS)))
# Cases past this size go out in 7-byte pieces instead of single bytes: the
# boundaries that matter (CR/LF, colons, chunk sizes) still land mid-piece,
# and a 64 KiB case stays well under a second.
BYTE_BY_BYTE_MAX = 16 * 1024


def pieces(data: bytes, split: str, seed_name: str) -> list[bytes]:
    if split == "whole":
        return [data]
    if split == "bytes":
        step = 1 if len(data) <= BYTE_BY_BYTE_MAX else 7
        return [data[i : i + step] for i in range(0, len(data), step)]
    if split == "lines":
        return [line for line in re.split(rb"(?<=\n)", data) if line]
    # random: reproducible from the case name and the split, so a failure
    # replays exactly; mostly small pieces, now and then a large one.
    rng = random.Random(zlib.crc32(f"{seed_name}/{split}".encode()))
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 8) if rng.random() < 0.8 else rng.randint(9, 512)
        out.append(data[i : i + n])
        i += n
    return out


def send_split(conn: RawConnection, data: bytes, split: str, seed_name: str, refused: bool) -> None:
    """Send in pieces. A `refused` case stops early once the server answered
    (it may refuse midway); a valid one sends everything, since pipelined
    requests are answered one by one while the rest still arrives."""
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in pieces(data, split, seed_name):
        if refused and select.select([conn.sock], [], [], 0)[0]:
            return
        try:
            conn.send(piece)
        except (BrokenPipeError, ConnectionResetError):
            return


def expectation(case: Path) -> object:
    return json.loads(case.with_suffix(".json").read_text())


def _server(app: str) -> OxgateProcess:
    # The corpus is HTTP/1.x: under the default --http auto its HTTP/2 preface case
    # would open an HTTP/2 connection instead (test_http2.py covers that).
    return OxgateProcess(["--bind", "127.0.0.1:0", "--http", "1", app], env=base_env()).start()


@pytest.fixture(scope="module")
def echo_server():
    server = _server("echo_env")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def counter_server():
    server = _server("counter")
    yield server
    server.stop()


def test_corpus_is_large_numbered_and_complete():
    assert len(VALID) + len(INVALID) >= 150
    numbers = [case.name[:3] for case in VALID + INVALID]
    assert all(re.fullmatch(r"\d{3}-[a-z0-9-]+\.http", case.name) for case in VALID + INVALID)
    assert len(set(numbers)) == len(numbers), "case numbers must be unique"
    for case in VALID + INVALID:
        assert case.with_suffix(".json").is_file(), case


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("case", VALID, ids=lambda p: p.stem)
def test_valid_corpus_request_is_served(echo_server, case, split):
    expect = expectation(case)
    # A list: one expected environ per response (pipelined requests).
    expected = expect if isinstance(expect, list) else [expect]
    with echo_server.connect() as conn:
        send_split(conn, case.read_bytes(), split, case.stem, refused=False)
        for n, want in enumerate(expected):
            resp = conn.read_response()
            assert resp.status == 200, (n, resp)
            env = resp.json()
            for key, value in want.items():
                if key == "#":  # a comment: the rule the case checks
                    continue
                if value is None:
                    assert key not in env, (n, key, env.get(key))
                else:
                    assert env.get(key) == value, (n, key)
        # Nothing more: once we stop sending, the server answers no other
        # request (no smuggled one hid in the bytes) and closes.
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.wait_closed(5) == b""


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_invalid_corpus_request_is_refused_closed_and_app_not_called(counter_server, case, split):
    expect = expectation(case)
    status = expect["status"]
    before = counter_server.get_json("/__calls__")["calls"]
    with counter_server.connect() as conn:
        send_split(conn, case.read_bytes(), split, case.stem, refused=True)
        if expect.get("half_close"):
            # A truncated message: the client says it has nothing more.
            conn.sock.shutdown(socket.SHUT_WR)
        # The first thing sent back is the refusal: no 100 Continue before it.
        resp = conn.read_response(allow_informational=True)
        assert resp.status == status, resp
        conn.wait_closed(5)
    assert counter_server.get_json("/__calls__")["calls"] == before
