"""Faults with real processes: the database or the object store goes away and
comes back, and a server is killed in the middle of an upload."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.helpers import ADDRESS, PASSWORD, box_stl, email
from tests.server_process import start_server
from tests.tcp_proxy import TcpProxy

SIGN_UP = "mutation($i: SignUpInput!) { signUp(input: $i) { token } }"
ME = "{ me { id } }"


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        log = Path(tempfile.mkdtemp(prefix="pv-faults-")) / "server.log"
        self.process, self.port = start_server({**os.environ, **env}, log)
        self.url = f"http://127.0.0.1:{self.port}"

    def gql(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(
            self.url + "/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=30,
        )
        return response.json()

    def health(self) -> int:
        return httpx.get(self.url + "/healthz", timeout=10).status_code

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)
        self.process.wait(timeout=30)


def _sign_up(server: Server) -> str:
    data = {
        "email": email("fault"),
        "password": PASSWORD,
        "firstName": "F",
        "lastName": "T",
        "companyName": "C",
        "address": ADDRESS,
    }
    body = server.gql(SIGN_UP, {"i": data})
    assert not body.get("errors"), body
    return body["data"]["signUp"]["token"]


def _wait_for(predicate, seconds: float = 30) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


@pytest.fixture
async def postgres_database():
    admin_dsn = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable: {error}")
        pytest.skip(f"PostgreSQL SKIPPED: {error}")
    name = f"pv_fault_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_database_outage_fails_cleanly_and_heals_by_itself(
    postgres_database: str, tmp_path: Path
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)
    server = Server(
        {
            "DATA_DIR": str(tmp_path),
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{proxy.port}/{postgres_database}",
        }
    )
    try:
        token = _sign_up(server)
        assert server.health() == 200
        proxy.cut()
        body = server.gql(ME, token=token)
        assert body["errors"][0]["extensions"]["code"] == "INTERNAL"
        assert "requestId" in body["errors"][0]["extensions"]
        text = json.dumps(body)
        assert "asyncpg" not in text and "Traceback" not in text and "5432" not in text
        assert server.health() == 503
        proxy.restore()
        assert _wait_for(lambda: server.health() == 200), "did not recover"
        assert server.gql(ME, token=token)["data"]["me"]["id"]
    finally:
        server.stop()
        proxy.close()


pytest_plugins = ["tests.s3_server"]


def test_object_store_outage_fails_cleanly_and_heals(moto_s3, tmp_path: Path) -> None:
    host, port = moto_s3.endpoint_url.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    prefix = f"fault-{uuid.uuid4().hex[:6]}"
    server = Server(
        {
            "DATA_DIR": str(tmp_path),
            "STORAGE_URL": f"s3://{moto_s3.bucket}/{prefix}",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    try:
        token = _sign_up(server)
        proxy.cut()
        response = _upload(server, token, box_stl())
        assert response.status_code == 503
        assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL"
        assert server.health() == 503
        models = server.gql("{ models { edges { node { id } } } }", token=token)
        assert models["data"]["models"]["edges"] == []  # nothing half-written
        proxy.restore()
        assert _wait_for(lambda: server.health() == 200), "did not recover"
        assert _upload(server, token, box_stl()).status_code == 200
    finally:
        server.stop()
        proxy.close()


def _upload(server: Server, token: str, content: bytes) -> httpx.Response:
    operations = {
        "query": "mutation($f: Upload!) { uploadModel(file: $f) { id } }",
        "variables": {"f": None},
    }
    return httpx.post(
        server.url + "/graphql",
        files={
            "operations": (None, json.dumps(operations)),
            "map": (None, '{"0": ["variables.f"]}'),
            "0": ("part.stl", content),
        },
        headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "1"},
        timeout=60,
    )


def test_server_killed_mid_upload_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path), "ORPHAN_GRACE_SECONDS": "0"}
    server = Server(env)
    token = _sign_up(server)
    boundary = "pvboundary"
    operations = json.dumps(
        {
            "query": "mutation($f: Upload!) { uploadModel(file: $f) { id } }",
            "variables": {"f": None},
        }
    )
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n{operations}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n{{"0": ["variables.f"]}}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="0"; filename="big.stl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    stl = box_stl()
    body_prefix = head + stl[:80] + (200_000).to_bytes(4, "little") + b"\0" * (4 * 1024 * 1024)
    request = (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Apollo-Require-Preflight: 1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body_prefix) + 10_000_000}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(request + body_prefix)
        # Kill it while it streams the file into the store: once ciphertext is there.
        models = tmp_path / "objects" / "models"
        assert _wait_for(lambda: any(p.is_file() for p in models.rglob("*")), 60)
        server.stop(signal.SIGKILL)
    database = tmp_path / "printvault.sqlite3"
    rows = sqlite3.connect(database).execute("SELECT count(*) FROM model3d").fetchone()[0]
    assert rows == 0
    leftovers = [p for p in (tmp_path / "objects" / "models").rglob("*") if p.is_file()]
    assert leftovers, "the upload had not reached the store: this test would prove nothing"
    plaintext = b"\0" * 4096
    assert all(plaintext not in p.read_bytes() for p in leftovers)  # only ciphertext, if anything
    restarted = Server(env)  # its maintenance removes what the killed one left
    try:
        def files() -> list[Path]:  # model files; backups may appear beside them
            return [p for p in (tmp_path / "objects" / "models").rglob("*") if p.is_file()]

        runs = sqlite3.connect(database).execute("SELECT * FROM maintenance_run").fetchall()
        assert _wait_for(lambda: not files(), 30), (files(), runs)
    finally:
        restarted.stop()
