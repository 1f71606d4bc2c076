"""The command line: app loading, settings sources, start-up errors, signals."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import (
    APPS_DIR,
    OxgateProcess,
    RawConnection,
    base_env,
    error_lines,
    run_oxgate,
    simple_request,
    wait_event,
)


def assert_one_error_line(result: subprocess.CompletedProcess, code: int, *mentions: str) -> str:
    lines = error_lines(result.stderr)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1, f"expected one 'Error: ' line, got:\n{result.stderr}"
    for word in mentions:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    return lines[0]


# --- start-up errors ---------------------------------------------------------------------


def test_unknown_module_exits_4_with_one_error_line():
    result = run_oxgate(["--bind", "127.0.0.1:0", "no_such_module_xyz"])
    assert_one_error_line(result, 4, "no_such_module_xyz")
    assert "Traceback" not in result.stderr


def test_missing_variable_exits_4_with_one_error_line():
    result = run_oxgate(["--bind", "127.0.0.1:0", "echo_env:no_such_variable"])
    assert_one_error_line(result, 4, "no_such_variable", "echo_env")
    assert "Traceback" not in result.stderr


def test_default_variable_missing_exits_4_and_names_application():
    result = run_oxgate(["--bind", "127.0.0.1:0", "_events"])
    assert_one_error_line(result, 4, "application")


def test_not_callable_exits_4_with_one_error_line():
    result = run_oxgate(["--bind", "127.0.0.1:0", "not_callable"])
    assert_one_error_line(result, 4, "callable")


def test_import_error_prints_the_app_traceback_then_one_error_line_and_exits_4():
    result = run_oxgate(["--bind", "127.0.0.1:0", "import_error"])
    line = assert_one_error_line(result, 4, "import_error")
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: oxgate-test: broken at import time" in result.stderr
    assert "_configure" in result.stderr, "the app's own frames belong in the traceback"
    assert result.stderr.index("Traceback") < result.stderr.index(line)


def test_port_in_use_exits_3_with_one_error_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_oxgate(["--bind", f"127.0.0.1:{port}", "echo_env"])
    assert_one_error_line(result, 3, str(port))


def test_unknown_flag_exits_2_with_one_error_line():
    result = run_oxgate(["--no-such-flag", "echo_env"])
    assert_one_error_line(result, 2, "--no-such-flag")


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--threads", "abc"),
        ("--backlog", "-5"),
        ("--keep-alive", "soon"),
        ("--limit-request-line", "long"),
        ("--log-level", "loudest"),
        ("--bind", "127.0.0.1:notaport"),
        ("--env", "NO_EQUALS_SIGN"),
        ("--chdir", "/no/such/directory/oxgate-test"),
    ],
)
def test_bad_value_exits_2_with_one_error_line(flag, value):
    result = run_oxgate([flag, value, "echo_env"])
    assert_one_error_line(result, 2, flag.lstrip("-").split("-")[0])


def test_bad_flag_in_oxgate_cmd_args_exits_2_with_one_error_line():
    env = base_env({"OXGATE_CMD_ARGS": "--threads many"})
    result = run_oxgate(["--bind", "127.0.0.1:0", "echo_env"], env=env)
    assert_one_error_line(result, 2, "threads")


def test_missing_app_argument_exits_2_with_one_error_line():
    result = run_oxgate(["--bind", "127.0.0.1:0"])
    assert result.returncode == 2, result.stderr
    assert len(error_lines(result.stderr)) == 1, result.stderr


# --- informational commands --------------------------------------------------------------


def test_version_prints_name_and_version_and_exits_0():
    result = run_oxgate(["--version"])
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "oxgate" in out.lower()
    assert re.search(r"\d+\.\d+\.\d+", out)


def test_help_lists_the_settings_and_exits_0():
    result = run_oxgate(["--help"])
    assert result.returncode == 0, result.stderr
    for flag in (
        "--bind",
        "--threads",
        "--backlog",
        "--keep-alive",
        "--chdir",
        "--pythonpath",
        "--env",
        "--limit-request-line",
        "--limit-request-fields",
        "--limit-request-field_size",
        "--access-logfile",
        "--access-logformat",
        "--error-logfile",
        "--log-level",
        "--check-config",
        "--print-config",
        "--config",
        "--version",
    ):
        assert flag in result.stdout, flag


def test_console_script_runs():
    script = Path(sys.executable).parent / "oxgate"
    assert script.exists(), f"no console script next to {sys.executable}"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, env=base_env()
    )
    assert result.returncode == 0, result.stderr
    assert "oxgate" in (result.stdout + result.stderr).lower()


def test_check_config_with_a_loadable_app_exits_0_without_serving():
    result = run_oxgate(["--check-config", "--bind", "127.0.0.1:0", "echo_env"])
    assert result.returncode == 0, result.stderr
    assert "Listening at" not in result.stderr


def test_check_config_with_an_unloadable_app_fails_with_one_error_line():
    result = run_oxgate(["--check-config", "--bind", "127.0.0.1:0", "no_such_module_xyz"])
    assert result.returncode != 0
    assert len(error_lines(result.stderr)) == 1, result.stderr


def print_config(args: list[str], env: dict[str, str] | None = None, cwd=None) -> str:
    result = run_oxgate(["--print-config", *args], env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def setting(output: str, name: str) -> str:
    m = re.search(rf"^\s*{re.escape(name)}\s*[=:]\s*(.*?)\s*$", output, re.MULTILINE)
    assert m, f"{name} not in --print-config output:\n{output}"
    return m.group(1).strip("'\"")


def test_print_config_shows_effective_settings_and_exits_0():
    out = print_config(["--threads", "3", "--keep-alive", "7", "echo_env"])
    assert setting(out, "threads") == "3"
    assert setting(out, "keepalive") == "7"


# --- settings sources --------------------------------------------------------------------


def test_config_file_settings_are_used(oxgate, tmp_path):
    conf = tmp_path / "oxgate.conf.py"
    conf.write_text(
        'bind = "127.0.0.1:0"\n'
        "threads = 4\n"
        'accesslog = "-"\n'
        'access_log_format = "conf-format %(m)s %(U)s %(s)s"\n'
    )
    server = oxgate("-c", str(conf), "echo_env", bind=False)
    resp = httpx.get(server.url + "/from-conf")
    assert resp.json()["wsgi.multithread"] is True
    server.wait_for_stdout(r"conf-format GET /from-conf 200")


GUNICORN_CONF = '''\
"""A typical gunicorn.conf.py, kept exactly as gunicorn users write it."""
import multiprocessing
import os

bind = "127.0.0.1:0"
workers = 1
worker_class = "sync"
threads = 2
backlog = 64
keepalive = 5
timeout = 30
graceful_timeout = 10
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
loglevel = "info"
errorlog = "-"
accesslog = "-"
access_log_format = 'gunicorn-conf %(h)s "%(r)s" %(s)s'
raw_env = ["GREETING=from-gunicorn-conf"]
proc_name = "example"
max_requests = 0
cpu_hint = multiprocessing.cpu_count()
home = os.path.dirname(__file__)
'''


def test_gunicorn_conf_py_works_unchanged(oxgate, tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF)
    server = oxgate("-c", str(conf), "echo_env", bind=False)
    env = httpx.get(server.url + "/g?env=GREETING").json()
    assert env["_os_environ"] == {"GREETING": "from-gunicorn-conf"}
    assert env["wsgi.multithread"] is True
    server.wait_for_stdout(r'gunicorn-conf 127\.0\.0\.1 "GET /g\?env=GREETING HTTP/1\.1" 200')


def test_oxgate_conf_py_in_the_working_directory_is_read_by_default(oxgate, tmp_path):
    (tmp_path / "oxgate.conf.py").write_text('raw_env = ["FROM_DEFAULT_CONF=yes"]\n')
    server = oxgate("echo_env", cwd=tmp_path)
    env = httpx.get(server.url + "/?env=FROM_DEFAULT_CONF").json()
    assert env["_os_environ"] == {"FROM_DEFAULT_CONF": "yes"}


def test_config_file_with_syntax_error_exits_2_naming_the_file(tmp_path):
    conf = tmp_path / "broken.conf.py"
    conf.write_text("threads = = 2\n")
    result = run_oxgate(["-c", str(conf), "echo_env"])
    assert_one_error_line(result, 2, "broken.conf.py")


def test_missing_config_file_exits_2_naming_the_file(tmp_path):
    result = run_oxgate(["-c", str(tmp_path / "absent.conf.py"), "echo_env"])
    assert_one_error_line(result, 2, "absent.conf.py")


def test_oxgate_cmd_args_override_the_config_file_and_the_command_line_overrides_both(
    tmp_path,
):
    conf = tmp_path / "oxgate.conf.py"
    conf.write_text("threads = 2\nbacklog = 11\nkeepalive = 9\n")
    env = base_env({"OXGATE_CMD_ARGS": "--threads 3 --backlog 22"})
    only_file = print_config(["-c", str(conf), "echo_env"])
    assert (setting(only_file, "threads"), setting(only_file, "backlog")) == ("2", "11")
    file_and_env = print_config(["-c", str(conf), "echo_env"], env=env)
    assert setting(file_and_env, "threads") == "3"
    assert setting(file_and_env, "backlog") == "22"
    assert setting(file_and_env, "keepalive") == "9"
    all_three = print_config(["-c", str(conf), "--threads", "4", "echo_env"], env=env)
    assert setting(all_three, "threads") == "4"
    assert setting(all_three, "backlog") == "22"


def test_oxgate_cmd_args_are_applied_to_a_running_server(oxgate):
    server = oxgate(
        "echo_env",
        extra_env={"OXGATE_CMD_ARGS": "--access-logfile - --access-logformat 'env-args %(s)s'"},
    )
    httpx.get(server.url + "/")
    server.wait_for_stdout(r"^env-args 200$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_environment_variable_sets_the_default_bind(oxgate):
    port = free_port()
    server = oxgate("echo_env", bind=False, extra_env={"PORT": str(port)})
    assert any(url.endswith(f":{port}") for url in server.listening), server.listening
    assert "0.0.0.0" in server.listening[0]
    assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200


def test_explicit_bind_wins_over_port_environment_variable(oxgate):
    port = free_port()
    server = oxgate("echo_env", extra_env={"PORT": str(port)})
    assert server.port != port
    assert httpx.get(server.url + "/").status_code == 200


# --- loading the app ---------------------------------------------------------------------


def test_default_variable_is_application(oxgate):
    server = oxgate("factory_app")
    assert httpx.get(server.url + "/").text == "plain application, not the factory"


def test_module_colon_variable_loads_that_variable(oxgate):
    server = oxgate("named_app:app")
    assert httpx.get(server.url + "/").text == "named app"


def test_factory_call_without_arguments(oxgate):
    server = oxgate("factory_app:make_app()")
    assert httpx.get(server.url + "/").text == "hello"


def test_factory_call_with_positional_and_keyword_arguments(oxgate):
    server = oxgate("factory_app:make_app('hi', suffix='!')")
    assert httpx.get(server.url + "/").text == "hi!"


def test_dotted_module_path_loads(oxgate):
    server = oxgate("--chdir", str(APPS_DIR.parent.parent / "examples"), "flask_app.app:app")
    assert httpx.get(server.url + "/api/hello").json()["message"] == "hello"


def test_chdir_changes_directory_and_makes_the_app_importable(oxgate, tmp_path):
    server = oxgate("--chdir", str(APPS_DIR), "echo_env", cwd=tmp_path, pythonpath=False)
    env = httpx.get(server.url + "/").json()
    assert Path(env["_cwd"]).resolve() == APPS_DIR.resolve()


def test_pythonpath_adds_directories_to_sys_path(oxgate, tmp_path):
    extra = tmp_path / "extra_dir"
    extra.mkdir()
    server = oxgate(
        "--pythonpath", f"{APPS_DIR},{extra}", "echo_env", cwd=tmp_path, pythonpath=False
    )
    sys_path = [str(Path(p).resolve()) for p in httpx.get(server.url + "/").json()["_sys_path"]]
    assert str(APPS_DIR.resolve()) in sys_path
    assert str(extra.resolve()) in sys_path


def test_env_option_sets_environment_variables_for_the_app(oxgate):
    server = oxgate("-e", "FOO=bar", "--env", "BAZ=a=b c", "echo_env")
    env = httpx.get(server.url + "/?env=FOO,BAZ").json()
    assert env["_os_environ"] == {"FOO": "bar", "BAZ": "a=b c"}


# --- binding -----------------------------------------------------------------------------


def test_bind_is_repeatable_and_unix_sockets_work(oxgate, tmp_path):
    sock_path = tmp_path / "ox.sock"
    server = oxgate("--bind", "127.0.0.1:0", "--bind", f"unix:{sock_path}", "echo_env")
    assert f"unix:{sock_path}" in server.listening, server.listening
    assert httpx.get(server.url + "/tcp").json()["PATH_INFO"] == "/tcp"
    with RawConnection(str(sock_path), family=socket.AF_UNIX) as conn:
        resp = conn.request(simple_request(target="/unix"))
    assert resp.status == 200
    assert resp.json()["PATH_INFO"] == "/unix"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_bind_ipv6_loopback(oxgate):
    server = oxgate("--bind", "[::1]:0", "echo_env")
    url = server.listening[0]
    assert url.startswith("http://[::1]:"), url
    port = int(url.rsplit(":", 1)[1])
    with RawConnection(("::1", port)) as conn:
        resp = conn.request(simple_request())
    assert resp.json()["REMOTE_ADDR"] == "::1"


# --- threads -----------------------------------------------------------------------------


def test_threads_serve_requests_concurrently(oxgate):
    server = oxgate("slow_app", "--threads", "2")
    results: list[int] = []

    def call():
        results.append(httpx.get(server.url + "/barrier", timeout=20).status_code)

    workers = [threading.Thread(target=call) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert results == [200, 200]


def test_slow_request_does_not_block_other_threads(oxgate):
    server = oxgate("slow_app", "--threads", "2")
    slow = threading.Thread(
        target=lambda: httpx.get(server.url + "/sleep?s=3", timeout=20), daemon=True
    )
    slow.start()
    started = time.monotonic()
    assert httpx.get(server.url + "/fast", timeout=20).text == "fast"
    assert time.monotonic() - started < 2.5
    slow.join(20)


# --- signals -----------------------------------------------------------------------------


def test_sigterm_lets_the_in_flight_request_finish_and_exits_0(oxgate, events_file):
    server = oxgate("slow_app", "--threads", "2", "--graceful-timeout", "10")
    result: dict[str, object] = {}

    def call():
        try:
            resp = httpx.get(server.url + "/sleep?s=1.5", timeout=20)
            result["status"], result["text"] = resp.status_code, resp.text
        except httpx.HTTPError as e:  # recorded, asserted below
            result["error"] = repr(e)

    client = threading.Thread(target=call)
    client.start()
    wait_event(events_file, "started:/sleep")
    server.proc.send_signal(signal.SIGTERM)
    client.join(20)
    assert result == {"status": 200, "text": "slept"}
    assert server.wait_exit(15) == 0


def test_sigterm_stops_accepting_new_connections(oxgate):
    server = oxgate("echo_env")
    port = server.port
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(15) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_sigint_stops_the_server_quickly(oxgate):
    server = oxgate("echo_env")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    assert server.wait_exit(10) == 0
    assert time.monotonic() - started < 5


def test_server_started_from_another_directory_with_python_m(tmp_path):
    server = OxgateProcess(
        ["--bind", "127.0.0.1:0", "--chdir", str(APPS_DIR), "echo_env"],
        env=base_env(pythonpath=False),
        cwd=tmp_path,
    )
    try:
        server.start()
        assert httpx.get(server.url + "/").status_code == 200
    finally:
        server.stop()


def test_sigterm_closes_idle_keep_alive_connections_and_exits_promptly(oxgate):
    server = oxgate("echo_env", "--keep-alive", "30", "--graceful-timeout", "20")
    with server.connect() as conn:
        assert conn.request(simple_request()).status == 200
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert conn.wait_closed(10) == b""
        assert server.wait_exit(10) == 0
    assert time.monotonic() - started < 5


def test_graceful_timeout_bounds_the_wait_for_in_flight_requests(oxgate, events_file):
    server = oxgate("slow_app", "--threads", "2", "--graceful-timeout", "1")

    def call():
        try:
            httpx.get(server.url + "/sleep?s=8", timeout=20)
        except httpx.HTTPError:
            pass  # cut off by the stop: expected

    client = threading.Thread(target=call, daemon=True)
    client.start()
    wait_event(events_file, "started:/sleep")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.wait_exit(10)
    assert time.monotonic() - started < 5
    client.join(10)


def test_docs_settings_md_lists_every_command_line_option():
    docs = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
    assert docs.exists(), "docs/settings.md is generated from the settings table"
    text = docs.read_text()
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]+)", run_oxgate(["--help"]).stdout))
    flags -= {"--help", "--version"}
    missing = sorted(f for f in flags if f not in text)
    assert not missing, f"in --help but not in docs/settings.md: {missing}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_right_after_the_listening_line_stops_the_server_cleanly(sig):
    """Once `Listening at:` is logged the server must handle signals (readiness = ready)."""
    outcomes = []
    for _ in range(30):
        server = OxgateProcess(["--bind", "127.0.0.1:0", "echo_env"], env=base_env())
        server.start()
        server.proc.send_signal(sig)
        try:
            code = server.proc.wait(5)
        except subprocess.TimeoutExpired:
            code = "hung"
        server.stop(signal.SIGKILL)
        outcomes.append(code)
    summary = {str(code): outcomes.count(code) for code in set(outcomes)}
    if sig == signal.SIGTERM:
        assert outcomes == [0] * 30, f"exit codes over 30 runs: {summary}"
    else:
        assert "hung" not in outcomes, f"exit codes over 30 runs: {summary}"
