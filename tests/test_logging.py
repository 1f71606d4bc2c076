"""Access log (gunicorn's format and atoms) and error log (levels, file, format)."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from datetime import datetime, timezone

import httpx
from support import ERROR_LOG_LINE_RE, OxgateProcess, base_env, wait_until

UA = "oxgate-tests/1.0"


def test_access_log_is_off_by_default(oxgate):
    server = oxgate("echo_env")
    httpx.get(server.url + "/quiet-request", headers={"User-Agent": UA})
    assert server.stop() == 0
    assert "quiet-request" not in server.stdout_text()
    assert "quiet-request" not in server.stderr_text()


def test_access_log_to_stdout_uses_gunicorn_default_format(oxgate):
    server = oxgate("echo_env", "--access-logfile", "-")
    body_len = len(
        httpx.get(
            server.url + "/logged?x=1", headers={"User-Agent": UA, "Referer": "http://ref/"}
        ).content
    )
    m = server.wait_for_stdout(r"^.*/logged\?x=1.*$")
    # %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"
    expected = re.compile(
        r"^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
        rf'"GET /logged\?x=1 HTTP/1\.1" 200 {body_len} "http://ref/" "{re.escape(UA)}"$'
    )
    assert expected.match(m.group(0)), m.group(0)


def test_access_log_uses_dashes_for_missing_referer_and_user_agent(oxgate):
    server = oxgate("echo_env", "--access-logfile", "-")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /bare HTTP/1.0\r\n\r\n")
        while s.recv(65536):
            pass
    m = server.wait_for_stdout(r"^.*/bare.*$")
    assert m.group(0).endswith('"-" "-"'), m.group(0)


def test_access_log_custom_format_with_atoms(oxgate):
    fmt = (
        "m=%(m)s U=%(U)s q=%(q)s H=%(H)s s=%(s)s B=%(B)s b=%(b)s "
        "hdr=%({x-trace}i)s missing=%({x-absent}i)s out=%({content-type}o)s "
        "D=%(D)s L=%(L)s T=%(T)s p=%(p)s h=%(h)s"
    )
    server = oxgate("echo_env", "--access-logfile", "-", "--access-logformat", fmt)
    resp = httpx.post(server.url + "/custom?a=b", content=b"12345", headers={"X-Trace": "trace-42"})
    n = len(resp.content)
    m = server.wait_for_stdout(r"^m=POST .*$")
    line = m.group(0)
    expected = (
        rf"^m=POST U=/custom q=a=b H=HTTP/1\.1 s=200 B={n} b={n} "
        r"hdr=trace-42 missing=- out=application/json "
        r"D=(?P<D>\d+) L=(?P<L>\d+\.\d+) T=(?P<T>\d+) p=<(?P<p>\d+)> h=127\.0\.0\.1$"
    )
    parts = re.match(expected, line)
    assert parts, line
    assert float(parts["L"]) * 1_000_000 >= int(parts["D"]) * 0.5
    assert int(parts["D"]) < 10_000_000


def test_access_log_d_atom_measures_request_time_in_microseconds(oxgate):
    server = oxgate("slow_app", "--access-logfile", "-", "--access-logformat", "%(U)s %(D)s")
    httpx.get(server.url + "/sleep?s=0.3", timeout=20)
    m = server.wait_for_stdout(r"^/sleep (\d+)$")
    assert 250_000 <= int(m.group(1)) < 10_000_000


def test_access_log_to_a_file(oxgate, tmp_path):
    log = tmp_path / "access.log"
    server = oxgate("echo_env", "--access-logfile", str(log))
    httpx.get(server.url + "/to-file")
    wait_until(
        lambda: log.exists() and "/to-file" in log.read_text(), 10, "the access log line in file"
    )
    assert "/to-file" not in server.stdout_text()


def test_a_burst_is_logged_whole_and_the_worker_still_stops_at_once(oxgate, tmp_path):
    """Lines go out in batches (when a thread runs out of work, past 16 KiB, every
    200 ms): a stop right after a burst on several connections, answered by app threads
    and the I/O thread alike, loses none of them, and the worker exits at once rather
    than at --graceful-timeout."""
    log = tmp_path / "access.log"
    server = oxgate(
        "echo_env",
        "--threads",
        "4",
        "--graceful-timeout",
        "30",
        "--access-logfile",
        str(log),
        "--access-logformat",
        "%(U)s %(s)s",
    )

    def burst(client_no: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for j in range(100):
                assert client.get(f"/burst-{client_no}-{j}").status_code == 200

    clients = [threading.Thread(target=burst, args=(i,)) for i in range(4)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(60)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0
    assert time.monotonic() - started < 10
    lines = log.read_text().splitlines()
    expected = {f"/burst-{i}-{j} 200" for i in range(4) for j in range(100)}
    assert len(lines) == len(expected) and set(lines) == expected


def test_error_log_lines_have_timestamp_pid_and_level(oxgate):
    server = oxgate("echo_env")
    line = next(ln for ln in server.stderr_text().splitlines() if "Listening at:" in ln)
    m = ERROR_LOG_LINE_RE.match(line)
    assert m, line
    assert m["level"] == "INFO"
    assert int(m["pid"]) == server.pid
    stamp = datetime.strptime(m["time"], "%Y-%m-%d %H:%M:%S %z")
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 300


def test_error_logfile_writes_the_error_log_to_a_file(oxgate, tmp_path):
    log = tmp_path / "error.log"
    server = oxgate("wsgi_responses", "--error-logfile", str(log), ready=log)
    assert "Listening at:" not in server.stderr_text()
    httpx.get(server.url + "/raise-before-headers")
    wait_until(
        lambda: "oxgate-test: exception before headers" in log.read_text(),
        10,
        "the traceback in the error log file",
    )
    text = log.read_text()
    assert "[ERROR]" in text and "Traceback (most recent call last)" in text


def test_error_logfile_dash_is_stderr(oxgate):
    server = oxgate("echo_env", "--error-logfile", "-")
    assert "Listening at:" in server.stderr_text()


def _start_quiet(tmp_path, *args: str) -> OxgateProcess:
    """Start with a log level that hides the Listening line: wait on the socket instead."""
    sock = tmp_path / "quiet.sock"
    server = OxgateProcess(
        ["--bind", f"unix:{sock}", *args, "wsgi_responses"], env=base_env(), ready=None
    )
    server.start()

    def accepting():
        if server.proc.poll() is not None:
            raise AssertionError(f"oxgate exited: {server.stderr_text()}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
            return True
        except OSError:
            return False

    try:
        wait_until(accepting, 20, "the unix socket to accept")
    except BaseException:
        server.kill()
        raise
    server.sock_path = sock
    return server


def _unix_get(path: str, sock) -> int:
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, base_url="http://oxgate") as client:
        return client.get(path).status_code


def test_log_level_error_hides_info_lines_but_keeps_errors(tmp_path):
    server = _start_quiet(tmp_path, "--log-level", "error")
    try:
        assert _unix_get("/raise-before-headers", server.sock_path) == 500
        server.wait_for_stderr(r"\[ERROR\]")
        assert "[INFO]" not in server.stderr_text()
    finally:
        server.stop()


def test_log_level_critical_hides_errors(tmp_path):
    server = _start_quiet(tmp_path, "--log-level", "critical")
    try:
        assert _unix_get("/raise-before-headers", server.sock_path) == 500
        assert _unix_get("/single", server.sock_path) == 200
    finally:
        server.stop()
    assert "[ERROR]" not in server.stderr_text()
    assert "[INFO]" not in server.stderr_text()


def test_log_level_debug_is_accepted_and_shows_info(oxgate):
    server = oxgate("echo_env", "--log-level", "debug")
    assert "[INFO]" in server.stderr_text()
    assert httpx.get(server.url + "/").status_code == 200
