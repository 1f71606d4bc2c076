"""What the HTTP/2 tests share: the test app's name, certificates made by trustme
(conftest's `h2_pki` fixture), and clients (httpx over TLS and h2c, curl, ALPN probes, a raw
HTTP/1.1 GET)."""

from __future__ import annotations

import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import trustme
from support import (
    IO_TIMEOUT,
    RawConnection,
    simple_request,
)

APP = "h2_app"


# ---------------------------------------------------------------------------------------
# Certificates and clients
# ---------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_file: Path
    cert: Path
    key: Path

    def args(self, *extra: str) -> list[str]:
        return [APP, "--certfile", str(self.cert), "--keyfile", str(self.key), *extra]

    def context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
        return ctx


def make_pki(tmp_path: Path) -> Pki:
    """A CA and a server certificate for 127.0.0.1 and localhost (the `h2_pki` fixture)."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return Pki(ca_file, cert, key)


def https(server, path: str = "/") -> str:
    return f"https://localhost:{server.port}{path}"


def h2_client(pki: Pki) -> httpx.Client:
    return httpx.Client(http2=True, verify=pki.context(), timeout=IO_TIMEOUT)


def h2c_client() -> httpx.Client:
    """httpx with HTTP/2 only: on http:// URLs that is prior knowledge (h2c)."""
    return httpx.Client(http1=False, http2=True, timeout=IO_TIMEOUT)


def alpn_selected(port: int, ctx: ssl.SSLContext) -> str | None:
    """The protocol the server picks from the context's ALPN list; fails the handshake
    (ssl.SSLError) when it picks none."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            return sock.selected_alpn_protocol()


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def http1_get(server, target: str = "/") -> bytes:
    """An HTTP/1.1 GET on a plain connection; everything the server sent until it closed."""
    with RawConnection(("127.0.0.1", server.port)) as conn:
        conn.send(simple_request(target=target, headers=[("Connection", "close")]))
        return conn.wait_closed()
