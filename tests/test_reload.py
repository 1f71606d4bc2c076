"""--reload: workers follow the code on disk; a broken edit keeps the old code serving."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
from support import wait_until

APP = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"{version}"]
"""


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    # Coarse filesystem clocks: make sure the change is visible as a change.
    future = time.time() + 2 + len(text) % 7
    os.utime(path, (future, future))


def _body(server) -> str:
    return httpx.get(server.url + "/", timeout=5).text


def test_reload_serves_new_code_and_survives_a_broken_edit(oxgate, tmp_path: Path):
    module = tmp_path / "devapp.py"
    _write(module, APP.format(version="v1"))
    server = oxgate("--reload", "--chdir", str(tmp_path), "devapp", pythonpath=False)
    assert _body(server) == "v1"

    _write(module, APP.format(version="v2"))
    wait_until(lambda: _body(server) == "v2", 15, "the edited code to be served")

    _write(module, "def application(environ, start_response):\n    return [b'x'\n")
    wait_until(
        lambda: "keeping the running workers" in server.stderr_text(), 15, "the failed reload"
    )
    assert "SyntaxError" in server.stderr_text()
    assert _body(server) == "v2"
    assert server.proc.poll() is None

    _write(module, APP.format(version="v3"))
    wait_until(lambda: _body(server) == "v3", 20, "the fixed code to be served")


def test_reload_extra_file_triggers_a_restart(oxgate, tmp_path: Path):
    module = tmp_path / "devapp2.py"
    _write(module, APP.format(version="same"))
    extra = tmp_path / "template.txt"
    _write(extra, "one")
    server = oxgate(
        "--reload",
        "--reload-extra-file",
        str(extra),
        "--chdir",
        str(tmp_path),
        "devapp2",
        pythonpath=False,
    )
    wait_until(lambda: "Worker ready" in server.stderr_text(), 10, "a ready worker")
    _write(extra, "two!")
    wait_until(lambda: "template.txt modified" in server.stderr_text(), 15, "the extra file change")
    wait_until(lambda: server.stderr_text().count("Worker ready") >= 2, 15, "a new worker")
    assert _body(server) == "same"


def test_without_reload_edits_are_not_picked_up(oxgate, tmp_path: Path):
    module = tmp_path / "devapp3.py"
    _write(module, APP.format(version="v1"))
    server = oxgate("--chdir", str(tmp_path), "devapp3", pythonpath=False)
    assert _body(server) == "v1"
    _write(module, APP.format(version="v2"))
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert _body(server) == "v1"
        time.sleep(0.2)
