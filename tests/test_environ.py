"""The WSGI environ (PEP 3333 / CGI): every key, as the app sees it."""

from __future__ import annotations

import pytest
from support import simple_request


@pytest.fixture
def echo(oxgate):
    return oxgate("echo_env")


def environ_for(server, request: bytes) -> dict:
    with server.connect() as conn:
        conn.send(request)
        resp = conn.read_response()
        env = resp.json()
        env["_client_port"] = conn.local_port
    assert resp.status == 200, resp
    return env


def test_request_method_is_passed_as_sent(echo):
    assert environ_for(echo, simple_request("PATCH", "/"))["REQUEST_METHOD"] == "PATCH"
    assert environ_for(echo, simple_request("GET", "/"))["REQUEST_METHOD"] == "GET"


def test_script_name_is_empty_by_default(echo):
    env = environ_for(echo, simple_request(target="/x"))
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/x"


def test_path_info_is_percent_decoded_and_carried_as_latin1(echo):
    env = environ_for(echo, simple_request(target="/caf%C3%A9"))
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9"  # 'cafÃ©': the UTF-8 bytes as latin-1
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/caf\u00e9"


def test_path_info_decodes_encoded_slash_and_space(echo):
    env = environ_for(echo, simple_request(target="/a%2Fb/c%20d"))
    assert env["PATH_INFO"] == "/a/b/c d"


def test_path_info_keeps_invalid_percent_escapes(echo):
    env = environ_for(echo, simple_request(target="/a%zzb%4"))
    assert env["PATH_INFO"] == "/a%zzb%4"


def test_query_string_is_raw(echo):
    env = environ_for(echo, simple_request(target="/q?a=%20b&c=d%2F&e=caf%C3%A9&f"))
    assert env["QUERY_STRING"] == "a=%20b&c=d%2F&e=caf%C3%A9&f"


def test_query_string_is_empty_without_query(echo):
    assert environ_for(echo, simple_request(target="/q"))["QUERY_STRING"] == ""


def test_content_type_and_content_length_are_cgi_keys_not_http_keys(echo):
    env = environ_for(
        echo,
        simple_request("POST", "/", headers=[("Content-Type", "application/x-test")], body=b"abc"),
    )
    assert env["CONTENT_TYPE"] == "application/x-test"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["_body"] == "abc"


def test_server_name_and_port_are_str(echo):
    env = environ_for(echo, simple_request(host=f"127.0.0.1:{echo.port}"))
    assert isinstance(env["SERVER_NAME"], str) and env["SERVER_NAME"]
    assert env["SERVER_PORT"] == str(echo.port)


def test_server_port_without_host_header_is_the_listening_port(echo):
    env = environ_for(echo, simple_request(version="HTTP/1.0", host=None))
    assert env["SERVER_PORT"] == str(echo.port)
    assert env["SERVER_NAME"]


def test_server_protocol_is_the_request_version(echo):
    assert environ_for(echo, simple_request())["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ_for(echo, simple_request(version="HTTP/1.0"))["SERVER_PROTOCOL"] == "HTTP/1.0"


def test_remote_addr_and_remote_port_are_the_client_socket(echo):
    env = environ_for(echo, simple_request())
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(env["_client_port"])


def test_raw_uri_is_the_request_target_exactly_as_sent(echo):
    env = environ_for(echo, simple_request(target="/caf%C3%A9/%2F?x=%20y"))
    assert env["RAW_URI"] == "/caf%C3%A9/%2F?x=%20y"


def test_http_headers_become_http_keys(echo):
    env = environ_for(
        echo, simple_request(headers=[("X-Custom-Thing", "value 1"), ("Accept", "text/html")])
    )
    assert env["HTTP_X_CUSTOM_THING"] == "value 1"
    assert env["HTTP_ACCEPT"] == "text/html"
    assert env["HTTP_HOST"] == "test"


def test_repeated_headers_are_joined_with_comma_space(echo):
    env = environ_for(
        echo,
        simple_request(headers=[("X-Multi", "a"), ("Accept", "text/html"), ("X-Multi", "b")]),
    )
    assert env["HTTP_X_MULTI"] == "a, b"


def test_header_with_underscore_is_dropped(echo):
    env = environ_for(echo, simple_request(headers=[("X_Forwarded_For", "6.6.6.6")]))
    assert "HTTP_X_FORWARDED_FOR" not in env
    assert not any("6.6.6.6" in str(v) for k, v in env.items() if k.startswith("HTTP_"))


def test_header_with_underscore_does_not_override_dashed_one(echo):
    env = environ_for(
        echo,
        simple_request(headers=[("X-Forwarded-For", "10.0.0.1"), ("X_Forwarded_For", "6.6.6.6")]),
    )
    assert env["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"


def test_script_name_comes_from_environment_variable_and_is_stripped_from_path_info(oxgate):
    server = oxgate("echo_env", extra_env={"SCRIPT_NAME": "/mount"})
    env = environ_for(server, simple_request(target="/mount/inner/page?x=1"))
    assert env["SCRIPT_NAME"] == "/mount"
    assert env["PATH_INFO"] == "/inner/page"
    assert env["QUERY_STRING"] == "x=1"


def test_request_for_the_mount_point_itself_has_empty_path_info(oxgate):
    server = oxgate("echo_env", "--root-path", "/prefix")
    env = environ_for(server, simple_request(target="/prefix"))
    assert env["SCRIPT_NAME"] == "/prefix"
    assert env["PATH_INFO"] == ""


def test_root_path_option_sets_script_name_and_is_stripped_from_path_info(oxgate):
    server = oxgate("echo_env", "--root-path", "/prefix")
    env = environ_for(server, simple_request(target="/prefix/a%20b"))
    assert env["SCRIPT_NAME"] == "/prefix"
    assert env["PATH_INFO"] == "/a b"


def test_wsgi_version_is_1_0(echo):
    env = environ_for(echo, simple_request())
    assert env["wsgi.version"] == [1, 0]
    assert env["_types"]["wsgi.version"] == "tuple"


def test_wsgi_url_scheme_is_http(echo):
    assert environ_for(echo, simple_request())["wsgi.url_scheme"] == "http"


def test_wsgi_input_and_errors_have_the_pep3333_methods(echo):
    checks = environ_for(echo, simple_request())["_checks"]
    assert checks["input_methods"]
    assert checks["errors_methods"]


def test_wsgi_file_wrapper_is_callable(echo):
    assert environ_for(echo, simple_request())["_checks"]["file_wrapper_callable"]


def test_wsgi_flags_are_bools_with_run_once_false(echo):
    env = environ_for(echo, simple_request())
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        assert env["_types"][key] == "bool", key
    assert env["wsgi.run_once"] is False


def test_wsgi_multithread_is_false_with_one_thread(oxgate):
    server = oxgate("echo_env", "--threads", "1")
    assert environ_for(server, simple_request())["wsgi.multithread"] is False


def test_wsgi_multithread_is_true_with_several_threads(oxgate):
    server = oxgate("echo_env", "--threads", "4")
    assert environ_for(server, simple_request())["wsgi.multithread"] is True


def test_wsgi_input_terminated_is_true(echo):
    assert environ_for(echo, simple_request())["wsgi.input_terminated"] is True


def test_environ_keys_are_str_and_cgi_values_are_native_str(echo):
    env = environ_for(
        echo,
        simple_request(target="/caf%C3%A9?q=1", headers=[("X-Latin", "caf\u00e9")]),
    )
    assert env["_checks"]["all_keys_str"]
    assert env["_checks"]["cgi_values_str"]
    assert env["HTTP_X_LATIN"] == "caf\u00e9"  # obs-text bytes arrive as latin-1


def environs_on_one_connection(server, requests: list[bytes]) -> list[dict]:
    """The environ of each request, sent one after another on one connection."""
    envs = []
    with server.connect() as conn:
        for request in requests:
            conn.send(request)
            resp = conn.read_response()
            assert resp.status == 200, resp
            envs.append(resp.json())
    return envs


def test_header_values_follow_each_request_on_a_kept_alive_connection(echo):
    # oxgate reuses a connection's header strings while their bytes repeat:
    # a changed, a vanished or a new header must show as such every time.
    first, second, third = environs_on_one_connection(
        echo,
        [
            simple_request(headers=[("Cookie", "a=1"), ("X-Gone", "soon"), ("Accept", "*/*")]),
            simple_request(headers=[("Cookie", "a=2"), ("Accept", "*/*"), ("X-New", "n")]),
            simple_request(headers=[("cookie", "a=2"), ("Accept", "text/html")]),
        ],
    )
    assert (first["HTTP_COOKIE"], first["HTTP_X_GONE"], first["HTTP_ACCEPT"]) == (
        "a=1",
        "soon",
        "*/*",
    )
    assert "HTTP_X_NEW" not in first
    assert (second["HTTP_COOKIE"], second["HTTP_ACCEPT"], second["HTTP_X_NEW"]) == (
        "a=2",
        "*/*",
        "n",
    )
    assert "HTTP_X_GONE" not in second
    assert (third["HTTP_COOKIE"], third["HTTP_ACCEPT"]) == ("a=2", "text/html")
    assert "HTTP_X_NEW" not in third and "HTTP_X_GONE" not in third


def test_header_entries_follow_each_request_when_field_sections_repeat(echo):
    # A connection keeps the header entries of a field section its requests
    # repeat, made at the second repeat: every repeat must get exactly them,
    # whatever the app did to its own environ, and a change must not.
    a = [("Cookie", "a=1"), ("X-Gone", "soon")]
    b = [("Cookie", "a=2")]
    fwd = [("X-Forwarded-For", "203.0.113.7")]
    sent = [
        ("GET", "/", a, b""),
        ("GET", "/", a, b""),
        ("GET", "/", a, b""),
        ("GET", "/?mutate=1", a, b""),
        ("GET", "/x", a, b""),
        ("GET", "/", b, b""),
        ("GET", "/", b, b""),
        ("GET", "/", b, b""),
        ("GET", "/", a, b""),
        ("POST", "/", b, b"one"),
        ("POST", "/", b, b"two"),
        ("POST", "/", b, b"six"),
        ("GET", "/", b, b""),
        ("GET", "/", fwd, b""),
        ("GET", "/", fwd, b""),
        ("GET", "/?mutate=1", fwd, b""),
        ("GET", "/", fwd, b""),
    ]
    envs = environs_on_one_connection(
        echo, [simple_request(m, t, headers=h, body=body) for m, t, h, body in sent]
    )
    for i, ((method, _, headers, body), env) in enumerate(zip(sent, envs)):
        got = {k: v for k, v in env.items() if k.startswith(("HTTP_", "CONTENT_"))}
        want = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers}
        want["HTTP_HOST"] = "test"
        if body:
            want["CONTENT_LENGTH"] = str(len(body))
        assert got == want, f"request {i}"
        assert (env["REQUEST_METHOD"], env["_body"]) == (method, body.decode()), f"request {i}"
        assert "oxgate.test.leak" not in env
        forwarded = headers is fwd
        assert env["REMOTE_ADDR"] == ("203.0.113.7" if forwarded else "127.0.0.1"), f"request {i}"


def test_server_name_follows_the_host_of_each_request_on_a_kept_alive_connection(echo):
    envs = environs_on_one_connection(
        echo,
        [
            simple_request(host="one.example:8001"),
            simple_request(host="one.example:8001"),
            simple_request(host="one.example:8001"),
            simple_request(host="two.example"),
            simple_request(version="HTTP/1.0", host=None, headers=[("Connection", "keep-alive")]),
            simple_request(target="http://three.example:9/abs", host="ignored.example"),
        ],
    )
    seen = [(e["SERVER_NAME"], e["SERVER_PORT"], e.get("HTTP_HOST")) for e in envs]
    assert seen[:4] == [
        ("one.example", "8001", "one.example:8001"),
        ("one.example", "8001", "one.example:8001"),
        ("one.example", "8001", "one.example:8001"),
        ("two.example", "80", "two.example"),
    ]
    assert seen[4][1:] == (str(echo.port), None)
    assert seen[5] == ("three.example", "9", "ignored.example")
    assert {e["REMOTE_PORT"] for e in envs} == {envs[0]["REMOTE_PORT"]}


def test_every_per_request_key_is_set_for_each_request(echo):
    # The keys every request sets start from placeholders in a shared dict;
    # none may keep its placeholder or the previous request's value.
    first, second = environs_on_one_connection(
        echo,
        [
            simple_request("POST", "/p/q%20r?x=1", body=b"b"),
            simple_request("GET", "/", version="HTTP/1.0", headers=[("Connection", "keep-alive")]),
        ],
    )
    assert (first["REQUEST_METHOD"], first["PATH_INFO"], first["RAW_URI"]) == (
        "POST",
        "/p/q r",
        "/p/q%20r?x=1",
    )
    assert (first["QUERY_STRING"], first["SERVER_PROTOCOL"]) == ("x=1", "HTTP/1.1")
    assert (second["REQUEST_METHOD"], second["PATH_INFO"], second["RAW_URI"]) == ("GET", "/", "/")
    assert (second["QUERY_STRING"], second["SERVER_PROTOCOL"]) == ("", "HTTP/1.0")
    for env in (first, second):
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert env["SERVER_NAME"] and env["SERVER_PORT"]
        assert env["wsgi.input"] == "<Input>"


def test_method_and_protocol_follow_each_request_on_a_kept_alive_connection(echo):
    # From a connection's second request on, its environ starts from a template
    # that holds that request's method and protocol: later ones must override it.
    keep = [("Connection", "keep-alive")]
    sent = [
        ("GET", "HTTP/1.1"),
        ("GET", "HTTP/1.1"),
        ("POST", "HTTP/1.1"),
        ("GET", "HTTP/1.0"),
        ("PATCH", "HTTP/1.0"),
        ("GET", "HTTP/1.1"),
        ("BREW", "HTTP/1.1"),
        ("GET", "HTTP/1.1"),
    ]
    envs = environs_on_one_connection(
        echo,
        [
            simple_request(m, "/", version=v, headers=keep if v == "HTTP/1.0" else [])
            for m, v in sent
        ],
    )
    assert [(e["REQUEST_METHOD"], e["SERVER_PROTOCOL"]) for e in envs] == sent


def test_changes_an_app_makes_to_its_environ_stay_in_that_request(echo):
    envs = environs_on_one_connection(
        echo, [simple_request(target=t) for t in ("/a", "/b?mutate=1", "/c?mutate=1", "/d", "/e")]
    )
    for env in envs:
        assert "oxgate.test.leak" not in env
        assert (env["SERVER_NAME"], env["REMOTE_ADDR"]) == ("test", "127.0.0.1")


def test_repeated_headers_in_other_cases_are_joined(echo):
    env = environ_for(echo, simple_request(headers=[("X-Multi", "a"), ("x-multi", "b")]))
    assert env["HTTP_X_MULTI"] == "a, b"
