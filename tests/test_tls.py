"""`make run` with a certificate serves HTTPS: TLS 1.2 and 1.3 only, strong ciphers, HSTS."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.server_process import start_server


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(directory)
    env = {
        **os.environ,
        "DATA_DIR": str(directory / "data"),
        "TLS_CERTFILE": str(cert),
        "TLS_KEYFILE": str(key),
        "DATABASE_URL": "",
    }
    env.pop("DATABASE_URL")
    process, port = start_server(env, directory / "server.log")
    try:
        yield port, cert
    finally:
        process.terminate()
        process.wait(timeout=30)


def _handshake(port: int, cert: Path, version: ssl.TLSVersion) -> tuple[str, bytes]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cert)
    # Let the client offer old protocols; it is the server that must refuse them.
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.minimum_version = version
    context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        negotiated = tls.version() or ""
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
        return negotiated, response


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_modern_tls_is_accepted_with_hsts(https_server, version) -> None:
    port, cert = https_server
    negotiated, response = _handshake(port, cert, version)
    assert (
        negotiated
        == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    )
    assert response.startswith(b"HTTP/1.1 200")
    assert b"strict-transport-security: max-age=63072000" in response.lower()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_is_refused(https_server, version) -> None:
    port, cert = https_server
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _handshake(port, cert, version)


def test_weak_ciphers_are_refused(https_server) -> None:
    port, cert = https_server
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cert)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-SHA:@SECLEVEL=0")  # no forward secrecy, SHA-1 MAC
    with (
        pytest.raises(ssl.SSLError),
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
    ):
        context.wrap_socket(raw, server_hostname="localhost")


def test_control_this_client_does_speak_tls_1_0(tmp_path: Path) -> None:
    """Without this control, the refusal tests could pass because the client cannot
    offer TLS 1.0 at all; against a permissive server it does."""
    import threading

    cert, key = _self_signed(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    server.minimum_version = ssl.TLSVersion.TLSv1
    server.set_ciphers("ALL:@SECLEVEL=0")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept_once() -> None:
        connection, _ = listener.accept()
        with server.wrap_socket(connection, server_side=True) as tls:
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=accept_once, daemon=True)
    thread.start()
    negotiated, response = _handshake(port, cert, ssl.TLSVersion.TLSv1)
    thread.join(timeout=10)
    listener.close()
    assert negotiated == "TLSv1" and response.startswith(b"HTTP/1.1 200")
