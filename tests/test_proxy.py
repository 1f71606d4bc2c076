"""Behind a proxy: X-Forwarded-* and RFC 7239 Forwarded from trusted peers
(--forwarded-allow-ips), and the PROXY protocol v1/v2 (--proxy-protocol,
--proxy-allow-from)."""

from __future__ import annotations

import socket
import struct

import httpx
import pytest
from support import RawConnection, base_env, error_lines, run_oxgate, simple_request

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def environ_for(server, request: bytes, preamble: bytes = b"") -> dict:
    with server.connect() as conn:
        conn.send(preamble + request)
        resp = conn.read_response()
    assert resp.status == 200, resp
    return resp.json()


def get(headers: list[tuple[str, str]], host: str | None = "app.internal:8000") -> bytes:
    return simple_request(headers=headers, host=host)


def client_seen(server, chain: str = "203.0.113.9") -> str:
    """REMOTE_ADDR for a request whose X-Forwarded-For is `chain`."""
    return environ_for(server, get([("X-Forwarded-For", chain)]))["REMOTE_ADDR"]


# --- X-Forwarded-* and Forwarded ---------------------------------------------------------


def test_loopback_proxy_is_trusted_by_default_and_names_the_client(oxgate):
    server = oxgate("echo_env")
    env = environ_for(
        server,
        get(
            [
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "shop.example.com"),
            ]
        ),
    )
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    # The proxy's port is not the client's: better none than a wrong one.
    assert "REMOTE_PORT" not in env
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "shop.example.com"
    assert env["SERVER_NAME"] == "shop.example.com"
    assert env["SERVER_PORT"] == "443"
    # What the proxy sent stays visible.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.9"
    assert env["HTTP_X_FORWARDED_HOST"] == "shop.example.com"


def test_https_without_a_forwarded_host_makes_the_default_port_443(oxgate):
    server = oxgate("echo_env")
    env = environ_for(server, get([("X-Forwarded-Proto", "https")], host="example.org"))
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_NAME"] == "example.org"
    assert env["SERVER_PORT"] == "443"
    # No X-Forwarded-For: the peer stays the client.
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"].isdigit()


def test_forwarded_port_wins_over_the_host_header(oxgate):
    server = oxgate("echo_env")
    env = environ_for(server, get([("X-Forwarded-Port", "8443")], host="example.org:80"))
    assert env["SERVER_PORT"] == "8443"
    assert env["SERVER_NAME"] == "example.org"


def test_headers_from_an_untrusted_peer_change_nothing(oxgate):
    server = oxgate("echo_env", "--forwarded-allow-ips", "10.0.0.1,192.168.0.0/16")
    env = environ_for(
        server,
        get([("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https")]),
    )
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["SERVER_PORT"] == "8000"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.9"


def test_empty_allow_list_trusts_nobody(oxgate):
    server = oxgate("echo_env", "--forwarded-allow-ips", "")
    assert client_seen(server) == "127.0.0.1"


def test_allow_list_comes_from_the_environment_as_in_gunicorn(oxgate):
    server = oxgate("echo_env", extra_env={"FORWARDED_ALLOW_IPS": "10.9.9.9"})
    assert client_seen(server) == "127.0.0.1"
    # A flag wins over the variable.
    server = oxgate(
        "echo_env", "--forwarded-allow-ips", "127.0.0.1", extra_env={"FORWARDED_ALLOW_IPS": ""}
    )
    assert client_seen(server) == "203.0.113.9"


def test_a_client_cannot_choose_its_address_through_a_proxy_chain(oxgate):
    # The client sent "X-Forwarded-For: 6.6.6.6"; its proxy (10.0.0.2, trusted)
    # appended the client's real address, and the local proxy appended 10.0.0.2.
    server = oxgate("echo_env", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8")
    assert client_seen(server, "6.6.6.6, 198.51.100.4, 10.0.0.2") == "198.51.100.4"


def test_rfc7239_forwarded_gives_address_port_scheme_and_host(oxgate):
    server = oxgate("echo_env")
    env = environ_for(
        server,
        get(
            [
                ("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https;host=shop.example:9443'),
                # Forwarded wins over the de-facto headers.
                ("X-Forwarded-For", "203.0.113.9"),
            ]
        ),
    )
    assert env["REMOTE_ADDR"] == "2001:db8:cafe::17"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "shop.example:9443"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "9443")


def test_values_that_do_not_parse_are_ignored(oxgate):
    server = oxgate("echo_env")
    env = environ_for(
        server,
        get(
            [
                ("X-Forwarded-For", "<script>"),
                ("X-Forwarded-Proto", "gopher"),
                ("X-Forwarded-Host", "evil.example/path"),
            ]
        ),
    )
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "app.internal:8000"


def test_each_request_on_a_kept_alive_connection_is_judged_alone(oxgate):
    server = oxgate("echo_env")
    with server.connect() as conn:
        conn.send(get([("X-Forwarded-For", "203.0.113.1"), ("X-Forwarded-Proto", "https")]))
        first = conn.read_response().json()
        conn.send(get([]))
        second = conn.read_response().json()
        conn.send(get([]))
        third = conn.read_response().json()
    assert (first["REMOTE_ADDR"], first["wsgi.url_scheme"]) == ("203.0.113.1", "https")
    for env in (second, third):
        assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http")
        assert env["SERVER_PORT"] == "8000"
        assert env["REMOTE_PORT"].isdigit()


def test_unix_socket_peers_are_trusted(oxgate, tmp_path):
    sock_path = tmp_path / "ox.sock"
    oxgate("--bind", f"unix:{sock_path}", "echo_env", "--forwarded-allow-ips", "10.0.0.1")
    with RawConnection(str(sock_path), family=socket.AF_UNIX) as conn:
        resp = conn.request(get([("X-Forwarded-For", "203.0.113.9")]))
    assert resp.json()["REMOTE_ADDR"] == "203.0.113.9"


def test_django_behind_a_tls_proxy_sees_https_and_the_client(oxgate, django_site):
    server = oxgate("--chdir", str(django_site), "mysite.wsgi", pythonpath=False)
    info = httpx.get(
        server.url + "/api/info",
        headers={
            "X-Forwarded-For": "203.0.113.50",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "www.example.com",
        },
    ).json()
    assert info["secure"] is True
    assert info["remote_addr"] == "203.0.113.50"
    assert info["absolute_uri"] == "https://www.example.com/"


@pytest.mark.parametrize(
    "value,why",
    [("proxy.local", "'proxy.local'"), ("10.0.0.0/33", "0 to 32"), ("1.2.3.4,,zz", "'zz'")],
)
def test_bad_allow_list_exits_2_with_one_error_line(value, why):
    result = run_oxgate(["--forwarded-allow-ips", value, "echo_env"])
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "--forwarded-allow-ips" in lines[0] and why in lines[0], lines[0]


def test_bad_allow_list_in_the_environment_names_the_variable():
    env = base_env({"FORWARDED_ALLOW_IPS": "not-an-ip"})
    result = run_oxgate(["echo_env"], env=env)
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert "FORWARDED_ALLOW_IPS" in lines[0], lines[0]


# --- PROXY protocol ----------------------------------------------------------------------


def v2_header(src: str, sport: int, tls: bool = False, command: int = 1) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton("10.0.0.1") + struct.pack("!HH", sport, 443)
    if tls:
        # PP2_TYPE_SSL, client bit PP2_CLIENT_SSL, verify 0.
        body += struct.pack("!BHBI", 0x20, 5, 0x01, 0)
    return V2_SIGNATURE + bytes([0x20 | command, 0x11]) + struct.pack("!H", len(body)) + body


@pytest.fixture
def proxied(oxgate):
    return oxgate("echo_env", "--proxy-protocol")


def test_proxy_v1_header_sets_the_client_address(proxied):
    env = environ_for(proxied, get([]), preamble=b"PROXY TCP4 192.0.2.10 10.0.0.1 51234 443\r\n")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.10", "51234")
    assert env["wsgi.url_scheme"] == "http"


def test_proxy_v1_tcp6_and_unknown(proxied):
    env = environ_for(proxied, get([]), preamble=b"PROXY TCP6 2001:db8::5 ::1 4000 443\r\n")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::5", "4000")
    env = environ_for(proxied, get([]), preamble=b"PROXY UNKNOWN\r\n")
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_proxy_v2_header_sets_the_client_and_tls_makes_https(proxied):
    env = environ_for(proxied, get([], host="example.org"), preamble=v2_header("192.0.2.77", 6000))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.77", "6000")
    assert env["wsgi.url_scheme"] == "http"
    env = environ_for(
        proxied, get([], host="example.org"), preamble=v2_header("192.0.2.77", 6000, tls=True)
    )
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_PORT"] == "443"
    # LOCAL: the balancer's own check; the peer stays the client.
    env = environ_for(proxied, get([]), preamble=v2_header("192.0.2.77", 1, command=0))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_proxy_header_holds_for_every_request_of_the_connection(proxied):
    with proxied.connect() as conn:
        conn.send(b"PROXY TCP4 192.0.2.10 10.0.0.1 51234 443\r\n")
        for _ in range(3):
            conn.send(get([]))
            assert conn.read_response().json()["REMOTE_ADDR"] == "192.0.2.10"


def test_proxy_header_arriving_byte_by_byte_is_read_whole(proxied):
    data = v2_header("192.0.2.8", 7000) + get([])
    with proxied.connect() as conn:
        for i in range(len(data)):
            conn.send(data[i : i + 1])
        resp = conn.read_response()
    assert resp.json()["REMOTE_ADDR"] == "192.0.2.8"


def test_without_a_header_a_listed_peer_speaks_plain_http(proxied):
    assert environ_for(proxied, get([]))["REMOTE_ADDR"] == "127.0.0.1"


def test_the_relayed_client_is_not_a_trusted_proxy(proxied):
    # The balancer is trusted for PROXY; the client behind it is not trusted
    # for X-Forwarded-For, so it cannot rewrite its address.
    env = environ_for(
        proxied,
        get([("X-Forwarded-For", "6.6.6.6")]),
        preamble=b"PROXY TCP4 192.0.2.10 10.0.0.1 51234 443\r\n",
    )
    assert env["REMOTE_ADDR"] == "192.0.2.10"


@pytest.mark.parametrize(
    "preamble",
    [
        b"PROXY TCP4 192.0.2.10 10.0.0.1 51234\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP4 192.0.2.10 10.0.0.1 99999 443\r\n",
        b"PROXY " + b"x" * 200,
        V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\x00" * 12,
    ],
    ids=["v1-missing-port", "v1-wrong-family", "v1-bad-port", "v1-too-long", "v2-bad-version"],
)
def test_malformed_proxy_header_is_a_400(proxied, preamble):
    with proxied.connect() as conn:
        conn.send(preamble + get([]))
        resp = conn.read_response()
    assert resp.status == 400


def test_proxy_header_from_a_peer_not_listed_is_a_403(oxgate):
    server = oxgate("echo_env", "--proxy-protocol", "--proxy-allow-from", "10.0.0.1")
    with server.connect() as conn:
        conn.send(b"PROXY TCP4 192.0.2.10 10.0.0.1 51234 443\r\n" + get([]))
        resp = conn.read_response()
    assert resp.status == 403
    # Plain HTTP from the same peer is still served.
    assert environ_for(server, get([]))["REMOTE_ADDR"] == "127.0.0.1"


def test_without_proxy_protocol_a_proxy_line_is_a_bad_request(oxgate):
    server = oxgate("echo_env")
    with server.connect() as conn:
        conn.send(b"PROXY TCP4 192.0.2.10 10.0.0.1 51234 443\r\n" + get([]))
        resp = conn.read_response()
    assert resp.status == 400


def test_proxy_protocol_over_a_unix_socket(oxgate, tmp_path):
    sock_path = tmp_path / "ox.sock"
    oxgate("--bind", f"unix:{sock_path}", "echo_env", "--proxy-protocol")
    with RawConnection(str(sock_path), family=socket.AF_UNIX) as conn:
        resp = conn.request(v2_header("198.51.100.3", 5555, tls=True) + get([]))
    env = resp.json()
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("198.51.100.3", "5555")
    assert env["wsgi.url_scheme"] == "https"
