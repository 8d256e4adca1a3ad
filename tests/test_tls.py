"""https:// and wss:// with ``--tls-cert``/``--tls-key``, on a self-signed certificate made here."""

from __future__ import annotations

import asyncio
import http.client
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from support import RunningServer, serve

APP = "tests/apps/hostile"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and localhost): cryptography if installed,
    else the openssl command line."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor openssl is available")
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "2",
                "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
    else:
        _make_with_cryptography(cert, key)
    return cert, key


def _make_with_cryptography(cert_path: Path, key_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_srv(certificate: tuple[Path, Path]) -> Iterator[RunningServer]:
    cert, key = certificate
    with serve(APP, "--tls-cert", str(cert), "--tls-key", str(key)) as server:
        yield server


@pytest.fixture(scope="module")
def client_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """Trusts exactly the test's certificate (and checks the host name against it)."""
    return ssl.create_default_context(cafile=str(certificate[0]))


def https_get(srv: RunningServer, context: ssl.SSLContext, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection(srv.host, srv.port, context=context, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_listens_on_https(tls_srv: RunningServer) -> None:
    assert tls_srv.scheme == "https"
    assert tls_srv.url.startswith("https://127.0.0.1:")
    assert tls_srv.ws_url.startswith("wss://")


def test_https_get(tls_srv: RunningServer, client_context: ssl.SSLContext) -> None:
    assert https_get(tls_srv, client_context, "/version") == (200, b"v1")
    status, body = https_get(tls_srv, client_context, "/getCurrentConnections")
    assert status == 200 and b"WebSocket clients connected" in body


def test_request_url_scheme_is_https(
    tls_srv: RunningServer, client_context: ssl.SSLContext
) -> None:
    status, body = https_get(tls_srv, client_context, "/url?q=1")
    assert (status, body) == (200, f"https://127.0.0.1:{tls_srv.port}/url?q=1".encode())


def test_wss_echo(tls_srv: RunningServer, client_context: ssl.SSLContext) -> None:
    async def run() -> None:
        async with websockets.connect(f"{tls_srv.ws_url}/websocket", ssl=client_context) as ws:
            for text in ("hello", "é" * 1000, "x" * 100_000):
                await ws.send(text)
                assert await asyncio.wait_for(ws.recv(), 5) == f"[Durable Object]: {text}"
            await ws.send(b"\x00\xff")
            assert await asyncio.wait_for(ws.recv(), 5) == b"[Durable Object]: \x00\xff"
            _, body = https_get(tls_srv, client_context, "/getCurrentConnections")
            assert body.startswith(b"There is 1 WebSocket client")

    asyncio.run(run())


def test_untrusted_client_fails_and_server_keeps_serving(
    tls_srv: RunningServer, client_context: ssl.SSLContext
) -> None:
    # A client that does not trust the certificate gives up in the handshake.
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(tls_srv, ssl.create_default_context(), "/version")
    assert https_get(tls_srv, client_context, "/version") == (200, b"v1")


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return data, False
    return data, True


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",  # a handshake record that is no ClientHello
        bytes(range(256)) * 4,
    ],
    ids=["plain-http", "bad-handshake", "random"],
)
def test_plain_http_and_garbage_on_the_tls_port(
    tls_srv: RunningServer, client_context: ssl.SSLContext, raw: bytes
) -> None:
    with socket.create_connection((tls_srv.host, tls_srv.port), timeout=5) as s:
        s.sendall(raw)
        data, closed = read_until_closed(s, 5)
    assert closed, "server neither answered nor closed"
    assert b"v1" not in data  # never answered in clear text
    assert https_get(tls_srv, client_context, "/version") == (200, b"v1")
    assert "Traceback" not in tls_srv.output(), tls_srv.output()[-4000:]


def test_stalled_tls_handshake_cut_at_header_timeout(certificate: tuple[Path, Path]) -> None:
    """A client that never finishes the TLS handshake has sent no request head either."""
    cert, key = certificate
    args = ("--tls-cert", str(cert), "--tls-key", str(key), "--header-timeout", "1")
    with serve(APP, *args) as srv:
        silent = socket.create_connection((srv.host, srv.port), timeout=5)
        partial = socket.create_connection((srv.host, srv.port), timeout=5)
        partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # ClientHello, cut
        try:
            for s in (silent, partial):
                _, closed = read_until_closed(s, 4)
                assert closed, "stalled TLS handshake still open after 4 s (--header-timeout 1)"
        finally:
            silent.close()
            partial.close()
        context = ssl.create_default_context(cafile=str(cert))
        assert https_get(srv, context, "/version") == (200, b"v1")
