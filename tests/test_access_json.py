"""The json access-log format, request ids (--request-id) and --access-log-skip."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from processes import parent_of
from support import RawConnection, error_lines, run_oxgate

JSON_KEYS = [
    "time",
    "remote_addr",
    "method",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "duration_ms",
    "user_agent",
    "referer",
    "request_id",
    "pid",
]
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def json_server(oxgate, *args: str, app: str = "echo_env"):
    return oxgate(app, "--access-logfile", "-", "--access-log-format", "json", *args)


def request(server, path: str, *headers: bytes, method: str = "GET", body: bytes = b""):
    """One request on its own connection; the response as RawResponse."""
    head = b"%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" % (
        method.encode(),
        path.encode(),
    )
    if body:
        head += b"Content-Length: %d\r\n" % len(body)
    with RawConnection(("127.0.0.1", server.port)) as conn:
        conn.send(head + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)
        return conn.read_response()


def log_entry(server, path: str) -> tuple[dict, str]:
    """The parsed JSON line logged for `path` (and the raw line)."""
    m = server.wait_for_stdout(r'^\{.*"path":"' + re.escape(path) + r'".*\}$')
    return json.loads(m.group(0)), m.group(0)


def logged_paths(server) -> list[str]:
    return [json.loads(line)["path"] for line in server.stdout_text().splitlines()]


# --- the json format -----------------------------------------------------------------------


def test_json_lines_hold_the_request_and_response_values(oxgate):
    server = json_server(oxgate)
    before = datetime.now(timezone.utc)
    resp = request(
        server,
        "/items?a=1&b=two",
        b"User-Agent: json-test/1.0",
        b"Referer: http://ref.example/page",
        method="POST",
        body=b"hello",
    )
    assert resp.status == 200
    entry, line = log_entry(server, "/items")
    assert list(entry) == JSON_KEYS
    assert entry["method"] == "POST"
    assert entry["path"] == "/items"
    assert entry["query"] == "a=1&b=two"
    assert entry["protocol"] == "HTTP/1.1"
    assert entry["status"] == 200
    assert entry["bytes"] == len(resp.body) > 0
    assert entry["remote_addr"] == "127.0.0.1"
    assert entry["user_agent"] == "json-test/1.0"
    assert entry["referer"] == "http://ref.example/page"
    assert entry["request_id"] is None
    assert parent_of(entry["pid"]) == server.pid
    assert isinstance(entry["duration_ms"], float) and 0 < entry["duration_ms"] < 10_000
    assert re.search(r'"duration_ms":\d+\.\d{3},', line), line
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", entry["time"])
    started = datetime.fromisoformat(entry["time"])
    assert before - timedelta(seconds=1) <= started <= datetime.now(timezone.utc)


def test_json_lines_log_errors_and_absent_headers_as_null(oxgate):
    server = json_server(oxgate, app="wsgi_responses")
    resp = request(server, "/raise-before-headers")
    assert resp.status == 500
    entry, _ = log_entry(server, "/raise-before-headers")
    assert entry["status"] == 500
    assert entry["bytes"] == len(resp.body)
    assert entry["query"] == ""
    assert entry["user_agent"] is None and entry["referer"] is None
    resp = request(server, "/nowhere")
    entry, _ = log_entry(server, "/nowhere")
    assert (entry["status"], entry["bytes"]) == (404, len(resp.body))


def test_json_escaping_of_a_hostile_user_agent_round_trips(oxgate):
    server = json_server(oxgate)
    # What a header may carry (RFC 9110 5.5): quotes, backslashes, HTAB, a
    # forged JSON tail, and obs-text bytes, C1 controls (0x85, 0x9b) among them.
    hostile = b'a "quoted" \\back\\slash\ttab"},{"status":999 caf\xe9 \x85\x9b[2J \xff end'
    resp = request(server, "/hostile", b"User-Agent: " + hostile)
    assert resp.status == 200
    entry, line = log_entry(server, "/hostile")
    assert entry["user_agent"] == hostile.decode("latin-1")
    # The environ shows the same text: the log and the app agree.
    assert resp.json()["HTTP_USER_AGENT"] == entry["user_agent"]
    assert entry["status"] == 200
    assert line.isascii() and "\t" not in line
    assert len(server.stdout_text().splitlines()) == 1


def test_default_and_custom_formats_still_work_beside_json(oxgate):
    server = oxgate("echo_env", "--access-logfile", "-", "--access-log-format", "%(m)s %(U)s")
    request(server, "/plain")
    server.wait_for_stdout(r"^GET /plain$")


# --- request ids ---------------------------------------------------------------------------


def test_request_id_is_off_by_default(oxgate):
    server = json_server(oxgate)
    resp = request(server, "/no-id")
    assert not resp.has_header("X-Request-ID")
    assert "HTTP_X_REQUEST_ID" not in resp.json()
    entry, _ = log_entry(server, "/no-id")
    assert entry["request_id"] is None


def test_a_sane_client_request_id_is_passed_through(oxgate):
    server = json_server(oxgate, "--request-id")
    sent = "Root=1-67a2b3c4-abc;Sampled=1_~.:/" + "x" * 166
    assert len(sent) == 200
    resp = request(server, "/passed", b"X-Request-ID: " + sent.encode())
    assert resp.json()["HTTP_X_REQUEST_ID"] == sent
    assert resp.header_all("X-Request-ID") == [sent]
    entry, _ = log_entry(server, "/passed")
    assert entry["request_id"] == sent


@pytest.mark.parametrize(
    "headers",
    [
        [b"X-Request-ID: has space"],
        [b"X-Request-ID: " + b"x" * 201],
        [b"X-Request-ID: caf\xe9"],
        [b"X-Request-ID: one", b"X-Request-ID: two"],
        [b"X-Request-ID:"],
    ],
    ids=["space", "too-long", "non-ascii", "repeated", "empty"],
)
def test_a_bad_client_request_id_is_replaced(oxgate, headers):
    server = json_server(oxgate, "--request-id")
    resp = request(server, "/replaced", *headers)
    given = resp.json()["HTTP_X_REQUEST_ID"]
    assert HEX32.match(given), given
    assert resp.header_all("X-Request-ID") == [given]
    entry, _ = log_entry(server, "/replaced")
    assert entry["request_id"] == given


def test_generated_request_ids_are_unique_and_reach_app_header_and_log(oxgate):
    server = json_server(oxgate, "--request-id", "--workers", "2")
    ids = []
    for i in range(40):
        resp = request(server, f"/gen/{i}")
        given = resp.json()["HTTP_X_REQUEST_ID"]
        assert HEX32.match(given), given
        assert resp.header("X-Request-ID") == given
        ids.append(given)
    assert len(set(ids)) == len(ids)
    for i, given in enumerate(ids):
        entry, _ = log_entry(server, f"/gen/{i}")
        assert entry["request_id"] == given


def test_requests_queued_for_an_app_thread_carry_their_request_id(oxgate):
    # Slow calls move a one-thread worker from inline calls to its app thread's
    # queue; a request queued after its inline call was refused is answered by
    # another encoder, which must carry the id too.
    server = json_server(oxgate, "--request-id", app="slow_app")
    for i in range(12):
        resp = request(server, f"/sleep?s=0.02&i={i}")
        assert resp.status == 200
        assert HEX32.match(resp.header("X-Request-ID") or ""), (i, resp)


def test_request_ids_differ_on_one_keep_alive_connection(oxgate):
    server = oxgate("echo_env", "--request-id")
    seen = []
    with RawConnection(("127.0.0.1", server.port)) as conn:
        for _ in range(3):
            conn.send(b"GET /ka HTTP/1.1\r\nHost: t\r\n\r\n")
            resp = conn.read_response()
            assert resp.json()["HTTP_X_REQUEST_ID"] == resp.header("X-Request-ID")
            seen.append(resp.header("X-Request-ID"))
    assert len(set(seen)) == 3 and all(HEX32.match(s) for s in seen)


def test_an_app_that_sets_x_request_id_keeps_its_own(oxgate):
    server = json_server(oxgate, "--request-id", app="wsgi_responses")
    resp = request(server, "/own-request-id")
    assert resp.header_all("X-Request-ID") == ["chosen-by-the-app"]
    entry, _ = log_entry(server, "/own-request-id")
    assert HEX32.match(entry["request_id"])


def test_a_500_from_oxgate_carries_the_request_id(oxgate):
    server = json_server(oxgate, "--request-id", app="wsgi_responses")
    resp = request(server, "/raise-before-headers", b"X-Request-ID: trace-500")
    assert resp.status == 500
    assert resp.header("X-Request-ID") == "trace-500"


def test_rid_atom_logs_the_request_id(oxgate):
    server = oxgate(
        "echo_env", "--request-id", "--access-logfile", "-", "--access-logformat", "%(U)s %(rid)s"
    )
    resp = request(server, "/atom")
    m = server.wait_for_stdout(r"^/atom (\S+)$")
    assert m.group(1) == resp.header("X-Request-ID")
    assert HEX32.match(m.group(1))


# --- --access-log-skip ---------------------------------------------------------------------


def test_access_log_skip_drops_exactly_the_listed_paths(oxgate):
    server = json_server(oxgate, "--access-log-skip", "/healthz", "--access-log-skip=/ready")
    for path in ["/healthz", "/healthz?full=1", "/ready", "/healthz/", "/healthz/db", "/other"]:
        assert request(server, path).status == 200
    request(server, "/last")
    log_entry(server, "/last")
    assert logged_paths(server) == ["/healthz/", "/healthz/db", "/other", "/last"]


def test_access_log_skip_from_the_config_file(oxgate, tmp_path):
    conf = tmp_path / "oxgate.conf.py"
    conf.write_text('access_log_skip = ["/healthz"]\naccess_log_format = "json"\n')
    server = oxgate("echo_env", "-c", str(conf), "--access-logfile", "-")
    request(server, "/healthz")
    request(server, "/last")
    log_entry(server, "/last")
    assert logged_paths(server) == ["/last"]


# --- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,mention",
    [
        (["--access-log-skip", "healthz"], "for '--access-log-skip': expected a URL path"),
        (["--access-log-skip", "/healthz?x=1"], "cannot hold a query string"),
        (["--access-log-skip", ""], "for '--access-log-skip': expected a URL path"),
        (["--access-log-format", "%(nope)s"], "unknown atom '%(nope)s'"),
        (["--request-id=yes"], "'--request-id' takes no value"),
    ],
)
def test_bad_values_exit_2_with_one_error_line(args, mention):
    result = run_oxgate([*args, "echo_env"])
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert mention in lines[0], lines[0]


def test_bad_request_id_in_the_config_file_exits_2(tmp_path):
    conf = tmp_path / "bad.conf.py"
    conf.write_text('request_id = "maybe"\n')
    result = run_oxgate(["-c", str(conf), "echo_env"])
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "request_id" in lines[0], result.stderr
