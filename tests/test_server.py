"""The HTTP surface: error codes and masking, security headers, CSRF guard,
health, production switches, the caller's IP, and constant query counts."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from domain import accounts
from domain.errors import ERROR_CODES
from runtime.settings import Settings, SettingsError, load_settings
from storage.models import Company, Role
from tests.helpers import PASSWORD, Api, Caller
from web.middleware.client_ip import client_ip

REPO = Path(__file__).resolve().parents[1]


async def test_unexpected_errors_are_masked_with_a_request_id(
    api: Api, customer: Caller, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args, **kwargs):
        raise RuntimeError("SELECT secret FROM /var/lib/internal.py line 42")

    # Simulate a bug deep inside the domain.
    monkeypatch.setattr(accounts, "begin_totp_enrollment", broken)
    with caplog.at_level(logging.ERROR, logger="printvault.errors"):
        body = await api.gql("mutation { beginTotpEnrollment { secret } }", token=customer.token)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL"
    request_id = error["extensions"]["requestId"]
    assert request_id in error["message"]
    assert "SELECT" not in str(body) and "internal.py" not in str(body)
    assert "Traceback" not in str(body)
    assert any(request_id in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "document",
    [
        "{ me { ",
        "{ nope }",
        "{ me { id } } { me { id } }",
        'query { users(first: "x") { edges { cursor } } }',
    ],
)
async def test_malformed_documents_are_bad_user_input(api: Api, document: str) -> None:
    body = await api.gql(document)
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}


async def test_every_error_code_is_from_the_contract() -> None:
    contract = {
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "BAD_USER_INPUT",
        "MFA_REQUIRED",
        "RATE_LIMITED",
        "PAYLOAD_TOO_LARGE",
        "UNSUPPORTED_FORMAT",
        "INVALID_TRANSITION",
        "NOT_PRINTABLE",  # 2026-11-30: quotes and orders (issue 9)
        "INTERNAL",
        "REAUTH_REQUIRED",  # additions of 2026-11-30
    }
    assert contract == ERROR_CODES


async def test_security_headers_on_every_response(api: Api) -> None:
    response = await api.client.post("/graphql", json={"query": "{ me { id } }"})
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in headers  # only on TLS


async def test_queries_via_get_are_refused(api: Api) -> None:
    response = await api.client.get("/graphql", params={"query": "{ me { id } }"})
    assert response.status_code in (400, 405)


async def test_multipart_without_preflight_header_is_refused(api: Api) -> None:
    files = {"operations": (None, '{"query": "{ me { id } }"}'), "map": (None, "{}")}
    response = await api.client.post("/graphql", files=files)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    form = await api.client.post("/graphql", data={"query": "{ me { id } }"})
    assert form.status_code == 400


async def test_healthz_reports_the_database(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200 and response.json()["database"] is True


async def test_healthz_is_503_when_the_database_is_gone(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tortoise import connections

    async def dead(*args, **kwargs):
        raise ConnectionRefusedError("database down")

    # The driver itself fails, as it does when the server is gone.
    monkeypatch.setattr(connections.get("default"), "execute_query", dead)
    response = await api.client.get("/healthz")
    assert response.status_code == 503 and response.json()["database"] is False
    monkeypatch.undo()
    assert (await api.client.get("/healthz")).status_code == 200


def test_client_ip_trusts_forwarded_for_only_behind_known_proxies() -> None:
    assert client_ip("203.0.113.9", "1.2.3.4", []) == "203.0.113.9"
    assert client_ip("10.0.0.2", "1.2.3.4", ["10.0.0.0/8"]) == "1.2.3.4"
    assert client_ip("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.3", ["10.0.0.0/8"]) == "1.2.3.4"
    assert client_ip("10.0.0.2", "garbage", ["10.0.0.0/8"]) == "10.0.0.2"


def test_production_refuses_to_start_without_explicit_secrets(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="MASTER_KEYS"):
        load_settings({"APP_ENV": "production", "DATA_DIR": str(tmp_path)})
    assert not (tmp_path / "keys").exists()


def test_generated_secrets_are_private_and_stable(tmp_path: Path) -> None:
    first = load_settings({"DATA_DIR": str(tmp_path)})
    second = load_settings({"DATA_DIR": str(tmp_path)})
    assert first.master_keys == second.master_keys and first.secret_key == second.secret_key
    for name in ("master_keys", "secret_key"):
        mode = stat.S_IMODE(os.stat(tmp_path / "keys" / name).st_mode)
        assert mode == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    assert "master_keys=" not in repr(first).replace("master_keys=<", "")  # keys never in repr


def test_bad_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PORT"):
        load_settings({"DATA_DIR": str(tmp_path), "PORT": "eighty"})
    with pytest.raises(SettingsError, match="MASTER_KEYS"):
        load_settings({"DATA_DIR": str(tmp_path), "MASTER_KEYS": "k1:tooshort"})


async def test_production_schema_introspects_for_staff_only(
    database: str, settings: Settings, tmp_path: Path
) -> None:
    from dataclasses import replace

    from tests.conftest import serving

    production = replace(settings, app_env="production", storage_url=f"file://{tmp_path}")
    introspect = "{ __schema { types { name } } }"
    async with serving(production) as api:
        customer, staff = await api.customer(), await api.staff()
        for token in (None, customer.token):
            assert await api.error_code(introspect, token=token) == "BAD_USER_INPUT"
        assert (await api.ok(introspect, token=staff.token))["__schema"]["types"]
        typo = await api.gql("{ mee { id } }")
        assert "Did you mean" not in typo["errors"][0]["message"]
    async with serving(settings) as api:  # development: suggestions help developers
        typo = await api.gql("{ mee { id } }")
        assert "Did you mean" in typo["errors"][0]["message"]


async def test_a_page_of_users_costs_a_constant_number_of_queries(
    api: Api, staff: Caller, count_queries
) -> None:
    query = "{ users(first: 50) { edges { node { id email company { name members { id } } } } } }"

    async def cost() -> int:
        count_queries.reset()
        await api.ok(query, token=staff.token)
        return count_queries.count

    for _ in range(3):
        company = await Company.create(name="C", kind="CUSTOMER")
        await api.member(company, Role.CUSTOMER)
    small = await cost()
    for _ in range(20):
        company = await Company.create(name="C", kind="CUSTOMER")
        await api.member(company, Role.CUSTOMER)
    assert await cost() == small


async def test_pagination_walks_every_user_once(api: Api, staff: Caller) -> None:
    company = await Company.create(name="C", kind="CUSTOMER")
    for _ in range(7):
        await api.member(company, Role.CUSTOMER)
    seen, after = [], None
    while True:
        page = (
            await api.ok(
                "query($a: String) { users(first: 3, after: $a) { edges { node { id } } pageInfo { hasNextPage endCursor } } }",
                {"a": after},
                staff.token,
            )
        )["users"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 8
    assert (
        await api.error_code('{ users(after: "%%%") { edges { cursor } } }', token=staff.token)
        == "BAD_USER_INPUT"
    )
    assert (
        await api.error_code("{ users(first: 1000) { edges { cursor } } }", token=staff.token)
        == "BAD_USER_INPUT"
    )


def test_create_staff_command_prints_the_provisioning_uri(_connected: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": _connected}
    result = subprocess.run(
        [sys.executable, "server.py", "create-staff", "ops@example.com"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "otpauth://totp/" in result.stdout and PASSWORD not in result.stdout + result.stderr
    weak = subprocess.run(
        [sys.executable, "server.py", "create-staff", "ops2@example.com"],
        input="weak\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert weak.returncode == 2 and "password" in weak.stderr.lower()


def _conflicting_sqlite(tmp_path: Path) -> str:
    """A SQLite file whose tables clash with the first migration: it must fail."""
    import sqlite3

    path = tmp_path / "clash.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE company (x INTEGER)")
    return f"sqlite://{path}"


def test_a_failed_migration_ends_the_command_with_a_clear_error(tmp_path: Path) -> None:
    """It used to print a traceback and then hang forever: the migration engine's SQLite
    connection thread kept the process alive."""
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": _conflicting_sqlite(tmp_path)}
    result = subprocess.run(
        [sys.executable, "server.py", "migrate"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "migration failed" in result.stderr and 'table "company" already exists' in result.stderr
    assert "Traceback" not in result.stderr


def test_a_server_whose_migration_fails_exits(tmp_path: Path) -> None:
    """A supervisor restarts or reports a process that exits; one that hangs after
    "Application startup failed" looks alive and serves nothing."""
    env = {
        **os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": _conflicting_sqlite(tmp_path),
        "PORT": "0",
    }
    result = subprocess.run(
        [sys.executable, "server.py", "serve"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "Application startup failed" in result.stdout + result.stderr


def test_the_serving_process_tunes_its_garbage_collector(tmp_path: Path) -> None:
    """`serve` freezes what start-up made and collects the young generation less often
    (bench/README.md: the page's p99). Checked in a real `serve` process, up to the
    point where uvicorn would start."""
    probe = (
        "import gc, uvicorn\n"
        "from runtime.settings import load_settings\n"
        "from web import cli\n"
        "seen = {}\n"
        "uvicorn.Server.run = lambda self: seen.update(threshold=gc.get_threshold(),"
        " frozen=gc.get_freeze_count())\n"
        "cli.serve(load_settings())\n"
        "print(seen['threshold'][0], seen['frozen'] > 10_000)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["50000", "True"]
