"""TLS (--certfile, --keyfile, --ca-certs, --cert-reqs, --tls-min-version): real oxgate
processes with certificates made here by trustme, and real clients (httpx, curl, ssl).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509
from processes import poll, ready, wait_ready
from support import IO_TIMEOUT, RawConnection, error_lines, run_oxgate, simple_request
from tls_app import pattern

APP = "tls_app"


@dataclass
class Pki:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate."""

    ca: trustme.CA
    ca_file: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path
    client_pem: bytes

    def args(self, *extra: str) -> list[str]:
        return [APP, "--certfile", str(self.cert), "--keyfile", str(self.key), *extra]

    def mtls_args(self, reqs: int) -> list[str]:
        return self.args("--ca-certs", str(self.ca_file), "--cert-reqs", str(reqs))

    def context(self, client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if client_cert:
            ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


def write_leaf(leaf: trustme.LeafCert, cert: Path, key: Path) -> None:
    """The certificate with its chain in `cert`, its key in `key`."""
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    write_leaf(ca.issue_cert("127.0.0.1", "localhost"), cert, key)
    client = ca.issue_cert(
        "client.example", common_name="test client", organization_name="Oxgate, Tests"
    )
    client_cert, client_key = tmp_path / "client.pem", tmp_path / "client.key"
    write_leaf(client, client_cert, client_key)
    return Pki(ca, ca_file, cert, key, client_cert, client_key, client.cert_chain_pems[0].bytes())


class TlsConnection(RawConnection):
    """RawConnection over TLS: the same response parsing, on an ssl socket."""

    def __init__(
        self, port: int, ctx: ssl.SSLContext, timeout: float = IO_TIMEOUT, preamble: bytes = b""
    ):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        # Bytes in the clear before the handshake, as a balancer in TCP mode sends
        # a PROXY header (AWS NLB, HAProxy send-proxy).
        raw.sendall(preamble)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.eof = False

    CLOSED_ERRORS = (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


def url(server, path: str = "/") -> str:
    return f"https://localhost:{server.port}{path}"


def client(pki: Pki, cert: bool = False) -> httpx.Client:
    return httpx.Client(verify=pki.context(client_cert=cert), timeout=IO_TIMEOUT)


def get_env(server, pki: Pki, cert: bool = False) -> dict:
    with client(pki, cert) as c:
        resp = c.get(url(server, "/env"))
    assert resp.status_code == 200, resp.text
    return resp.json()


def server_cert_of(port: int, pki: Pki) -> x509.Certificate:
    """The certificate a new connection to `port` is shown."""
    with TlsConnection(port, pki.context()) as conn:
        der = conn.sock.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


# --- the basics ------------------------------------------------------------------------


def test_listening_line_says_https_and_plain_http_is_not_answered(oxgate, pki):
    server = oxgate(*pki.args())
    assert server.listening == [f"https://127.0.0.1:{server.port}"]
    # A plain-HTTP request is a failed handshake: closed, no HTTP answer, no crash.
    with RawConnection(("127.0.0.1", server.port)) as conn:
        conn.send(simple_request())
        assert b"HTTP/1.1 200" not in conn.wait_closed()
    with client(pki) as c:
        assert c.get(url(server)).text == "hello"
    assert "panick" not in server.stderr_text() and "ERROR" not in server.stderr_text()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_get_and_post_over_tls_with_each_version(oxgate, pki, version):
    server = oxgate(*pki.args())
    ctx = pki.context()
    ctx.minimum_version = ctx.maximum_version = version
    with httpx.Client(verify=ctx, timeout=IO_TIMEOUT) as c:
        assert c.get(url(server)).text == "hello"
        body = os.urandom(200_000)
        resp = c.post(url(server, "/echo"), content=body)
        assert resp.status_code == 200 and resp.content == body
        env = c.get(url(server, "/env")).json()
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["SERVER_PORT"] == str(server.port)
    # Without --cert-reqs nothing about client certificates is made up.
    assert env["SSL_CLIENT_VERIFY"] is None and env["SSL_CLIENT_S_DN"] is None


def test_curl_with_cacert_gets_the_page_over_h2_or_http_1_1(oxgate, pki):
    server = oxgate(*pki.args())
    for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
        out = subprocess.run(
            [
                "curl",
                "-sS",
                flag,
                "--cacert",
                str(pki.ca_file),
                "-w",
                " %{http_version}",
                url(server),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout == f"hello {version}"


def test_alpn_prefers_h2_and_falls_back_to_http_1_1(oxgate, pki):
    server = oxgate(*pki.args())
    ctx = pki.context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with TlsConnection(server.port, ctx) as conn:
        assert conn.sock.selected_alpn_protocol() == "h2"
    ctx = pki.context()
    ctx.set_alpn_protocols(["http/1.1"])
    with TlsConnection(server.port, ctx) as conn:
        assert conn.sock.selected_alpn_protocol() == "http/1.1"
        assert conn.request(simple_request()).body == b"hello"


def test_alpn_offers_http_1_1_only_with_http_1(oxgate, pki):
    server = oxgate(*pki.args(), "--http", "1")
    ctx = pki.context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with TlsConnection(server.port, ctx) as conn:
        assert conn.sock.selected_alpn_protocol() == "http/1.1"
        assert conn.request(simple_request()).body == b"hello"


# --- every kind of body ----------------------------------------------------------------


def test_large_streamed_response_arrives_whole_and_chunked(oxgate, pki):
    server = oxgate(*pki.args())
    with TlsConnection(server.port, pki.context()) as conn:
        resp = conn.request(simple_request(target="/stream?n=64&size=65536"))
        assert resp.status == 200 and resp.chunked
        assert resp.body == pattern(65536) * 64
        # The connection is still good for the next request.
        assert conn.request(simple_request()).body == b"hello"


def test_file_wrapper_response_goes_through_tls(oxgate, pki):
    server = oxgate(*pki.args())
    size = 3 * 1024 * 1024 + 17
    with client(pki) as c:
        resp = c.get(url(server, f"/file?size={size}"))
    assert resp.status_code == 200
    assert hashlib.sha256(resp.content).digest() == hashlib.sha256(pattern(size)).digest()


def test_static_files_and_ranges_over_tls(oxgate, pki, tmp_path: Path):
    root = tmp_path / "static"
    root.mkdir()
    data = pattern(700_001)
    (root / "blob.bin").write_bytes(data)
    server = oxgate(*pki.args("--static-map", f"/static={root}"))
    with client(pki) as c:
        whole = c.get(url(server, "/static/blob.bin"))
        part = c.get(url(server, "/static/blob.bin"), headers={"Range": "bytes=100000-100099"})
    assert whole.status_code == 200 and whole.content == data
    assert part.status_code == 206 and part.content == data[100000:100100]


def test_large_body_with_expect_100_continue(oxgate, pki):
    server = oxgate(*pki.args())
    body = pattern(1_000_003)
    with TlsConnection(server.port, pki.context()) as conn:
        conn.send(
            simple_request(
                "POST",
                "/echo",
                headers=[("Content-Length", str(len(body))), ("Expect", "100-continue")],
            )
        )
        interim = conn.read_response(allow_informational=True)
        assert interim.status == 100
        conn.send(body)
        resp = conn.read_response()
    assert resp.status == 200 and resp.body == body


def test_keep_alive_and_pipelined_requests_share_one_connection(oxgate, pki):
    server = oxgate(*pki.args())
    with TlsConnection(server.port, pki.context()) as conn:
        first = conn.request(simple_request(target="/env")).json()
        second = conn.request(simple_request(target="/env")).json()
        # Three requests in one write: three answers, in order.
        conn.send(
            simple_request(target="/env")
            + simple_request("POST", "/echo", body=b"pipelined")
            + simple_request(target="/")
        )
        third = conn.read_response().json()
        echoed = conn.read_response().body
        last = conn.read_response().body
    assert first["REMOTE_PORT"] == second["REMOTE_PORT"] == third["REMOTE_PORT"]
    assert (echoed, last) == (b"pipelined", b"hello")


# --- the PROXY protocol on a TLS port ----------------------------------------------------


def test_proxy_header_in_the_clear_before_the_handshake(oxgate, pki):
    server = oxgate(*pki.args("--proxy-protocol"))
    line = b"PROXY TCP4 192.0.2.10 10.0.0.1 51234 443\r\n"
    with TlsConnection(server.port, pki.context(), preamble=line) as conn:
        first = conn.request(simple_request(target="/env")).json()
        second = conn.request(simple_request(target="/env")).json()
    for env in (first, second):
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.10", "51234")
        assert env["wsgi.url_scheme"] == "https"
    # A listed peer may also connect without a header (a health check).
    assert get_env(server, pki)["REMOTE_ADDR"] == "127.0.0.1"


def test_proxy_header_before_tls_from_an_unlisted_peer_is_closed(oxgate, pki):
    server = oxgate(*pki.args("--proxy-protocol", "--proxy-allow-from", "10.0.0.1"))
    line = b"PROXY TCP4 192.0.2.10 10.0.0.1 51234 443\r\n"
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        with TlsConnection(server.port, pki.context(), preamble=line) as conn:
            conn.request(simple_request(target="/env"))
    # Without a header the same peer is served.
    assert get_env(server, pki)["REMOTE_ADDR"] == "127.0.0.1"


# --- versions and client certificates --------------------------------------------------


def test_tls_1_3_minimum_refuses_a_tls_1_2_client(oxgate, pki):
    server = oxgate(*pki.args("--tls-min-version", "1.3"))
    old = pki.context()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        TlsConnection(server.port, old).close()
    new = pki.context()
    with TlsConnection(server.port, new) as conn:
        assert conn.sock.version() == "TLSv1.3"
        assert conn.request(simple_request()).body == b"hello"


def _refused_without_certificate(port: int, ctx: ssl.SSLContext) -> bool:
    """True when the server ends the connection without answering a request.

    With TLS 1.3 the client's handshake completes before the server has judged the
    client's certificate, so the refusal may only show on the first read.
    """
    try:
        with TlsConnection(port, ctx) as conn:
            conn.send(simple_request())
            return not conn._fill()
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


def test_required_client_certificate_refuses_clients_without_one(oxgate, pki):
    server = oxgate(*pki.mtls_args(2))
    assert _refused_without_certificate(server.port, pki.context())
    # One from another CA is no better.
    stranger = trustme.CA().issue_cert("client.example")
    ctx = pki.context()
    stranger.configure_cert(ctx)
    assert _refused_without_certificate(server.port, ctx)

    env = get_env(server, pki, cert=True)
    expected = x509.load_pem_x509_certificate(pki.client_pem).subject.rfc4514_string()
    assert "CN=test client" in expected and "O=Oxgate\\, Tests" in expected
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == expected
    assert env["SSL_CLIENT_CERT"].encode() == pki.client_pem.replace(b"\r\n", b"\n")


def test_optional_client_certificate_says_whether_one_was_given(oxgate, pki):
    server = oxgate(*pki.mtls_args(1))
    assert get_env(server, pki)["SSL_CLIENT_VERIFY"] == "NONE"
    env = get_env(server, pki, cert=True)
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"].startswith("CN=test client,")


# --- timeouts, reload, bad files -------------------------------------------------------


def test_silent_client_is_closed_at_the_header_timeout(oxgate, pki):
    server = oxgate(*pki.args("--header-timeout", "1"))
    with RawConnection(("127.0.0.1", server.port), timeout=10) as conn:
        started = time.monotonic()
        assert conn.wait_closed(timeout=8) == b""
        waited = time.monotonic() - started
    assert 0.8 <= waited < 5, waited
    # A handshake that stops halfway is held no longer.
    with RawConnection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        started = time.monotonic()
        conn.wait_closed(timeout=8)
        assert time.monotonic() - started < 5
    with client(pki) as c:
        assert c.get(url(server)).text == "hello"
    assert "ERROR" not in server.stderr_text()


def test_hup_serves_a_renewed_certificate(master, pki, tmp_path: Path):
    server = master(*pki.args("--workers", "2"))
    before = server_cert_of(server.port, pki)
    old_workers = wait_ready(server, 2)
    renewed = pki.ca.issue_cert("127.0.0.1", "localhost", organization_unit_name="renewed")
    new_cert, new_key = tmp_path / "new.pem", tmp_path / "new.key"
    write_leaf(renewed, new_cert, new_key)
    # As certbot does: the files change in place, the server is told with HUP.
    shutil.copyfile(new_cert, pki.cert)
    shutil.copyfile(new_key, pki.key)
    expected = x509.load_pem_x509_certificate(renewed.cert_chain_pems[0].bytes())
    assert expected.serial_number != before.serial_number
    os.kill(server.pid, signal.SIGHUP)
    wait_ready(server, 2, exclude=old_workers)
    poll(
        lambda: server_cert_of(server.port, pki).serial_number == expected.serial_number,
        15,
        lambda: f"the renewed certificate after HUP (workers ready: {ready(server)})",
        server,
    )


def _start_error(args: list[str]) -> tuple[int, list[str]]:
    result = run_oxgate(["--bind", "127.0.0.1:0", *args])
    return result.returncode, error_lines(result.stderr)


def test_bad_certificate_files_give_one_line_naming_file_and_fault(pki, tmp_path: Path):
    missing = tmp_path / "missing.pem"
    other = trustme.CA().issue_cert("127.0.0.1")
    other_key = tmp_path / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    cases = [
        (["--certfile", str(missing), "--keyfile", str(pki.key)], f"{missing}: no such file"),
        (["--certfile", str(pki.key), "--keyfile", str(pki.key)], f"{pki.key}: no certificate"),
        (["--certfile", str(pki.cert), "--keyfile", str(pki.cert)], f"{pki.cert}: no private key"),
        (
            ["--certfile", str(pki.cert), "--keyfile", str(other_key)],
            f"{other_key}: the private key does not match the certificate in {pki.cert}",
        ),
        (
            ["--certfile", str(pki.cert), "--keyfile", str(pki.key), "--ca-certs", str(missing)]
            + ["--cert-reqs", "2"],
            f"--ca-certs {missing}: no such file",
        ),
    ]
    for args, wanted in cases:
        code, lines = _start_error([*args, APP])
        assert code == 3, (args, lines)
        assert len(lines) == 1 and wanted in lines[0], (wanted, lines)


def test_certificate_and_key_in_one_file_is_accepted(oxgate, pki, tmp_path: Path):
    both = tmp_path / "both.pem"
    both.write_bytes(pki.cert.read_bytes() + pki.key.read_bytes())
    server = oxgate(APP, "--certfile", str(both))
    with client(pki) as c:
        assert c.get(url(server)).text == "hello"


@pytest.mark.parametrize(
    "args, wanted",
    [
        (["--keyfile", "k.pem"], "--keyfile needs --certfile"),
        (["--certfile", "c.pem", "--cert-reqs", "2"], "--cert-reqs 1 or 2 needs --ca-certs"),
        (["--tls-min-version", "1.1"], "expected 1.2 or 1.3"),
        (["--cert-reqs", "3"], "expected an integer from 0 to 2"),
    ],
)
def test_tls_flags_that_cannot_work_are_usage_errors(args, wanted):
    code, lines = _start_error([*args, APP])
    assert code == 2, lines
    assert len(lines) == 1 and wanted in lines[0], lines


def test_unix_socket_stays_plain_beside_a_tls_port(oxgate, pki, tmp_path: Path):
    sock = tmp_path / "s.sock"
    server = oxgate(*pki.args("--bind", "127.0.0.1:0", "--bind", f"unix:{sock}"))
    assert any(u.startswith("https://") for u in server.listening)
    assert f"unix:{sock}" in server.listening
    with RawConnection(str(sock), family=socket.AF_UNIX) as conn:
        env = conn.request(simple_request(target="/env")).json()
    assert env["wsgi.url_scheme"] == "http" and env["HTTPS"] is None
    assert json.loads(json.dumps(get_env(server, pki)))["HTTPS"] == "on"
