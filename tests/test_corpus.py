"""Replay tests/corpus/http/ against a real oxgate: at once, byte by byte, line by line."""

from __future__ import annotations

import json
import re
import select
import socket
from pathlib import Path

import pytest
from support import OxgateProcess, RawConnection, base_env

CORPUS = Path(__file__).resolve().parent / "corpus" / "http"
VALID = sorted((CORPUS / "valid").glob("*.http"))
INVALID = sorted((CORPUS / "invalid").glob("*.http"))
SPLITS = ("whole", "bytes", "lines")


def pieces(data: bytes, split: str) -> list[bytes]:
    if split == "whole":
        return [data]
    if split == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    return [line for line in re.split(rb"(?<=\n)", data) if line]


def send_split(conn: RawConnection, data: bytes, split: str) -> None:
    """Send in pieces; stop early if the server already answered (it may refuse midway)."""
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for piece in pieces(data, split):
        readable, _, _ = select.select([conn.sock], [], [], 0)
        if readable:
            return
        try:
            conn.send(piece)
        except (BrokenPipeError, ConnectionResetError):
            return


def _server(app: str) -> OxgateProcess:
    return OxgateProcess(["--bind", "127.0.0.1:0", app], env=base_env()).start()


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


def test_corpus_is_not_empty():
    assert len(VALID) >= 10 and len(INVALID) >= 10


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("case", VALID, ids=lambda p: p.stem)
def test_valid_corpus_request_is_served(echo_server, case, split):
    expect = json.loads(case.with_suffix(".json").read_text())
    with echo_server.connect() as conn:
        send_split(conn, case.read_bytes(), split)
        resp = conn.read_response()
    assert resp.status == 200, resp
    env = resp.json()
    for key, value in expect.items():
        if value is None:
            assert key not in env, (key, env.get(key))
        else:
            assert env.get(key) == value, key


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_invalid_corpus_request_is_refused_closed_and_app_not_called(counter_server, case, split):
    status = int(case.stem.split("-", 1)[0])
    before = counter_server.get_json("/__calls__")["calls"]
    with counter_server.connect() as conn:
        send_split(conn, case.read_bytes(), split)
        resp = conn.read_response()
        assert resp.status == status, resp
        conn.wait_closed(5)
    assert counter_server.get_json("/__calls__")["calls"] == before
