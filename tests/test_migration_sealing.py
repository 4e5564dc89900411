"""Migration 0005 seals the personal data of an existing database (SQLite and PostgreSQL).

A database at 0004 is filled with plaintext rows (raw SQL, as the old code
wrote them), then `server.py migrate` runs: afterwards no plaintext is left,
every value opens under its row, e-mails are found by their blind index, and
the ORM reads the rows back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage.crypto import KeyRing
from storage.sealed_fields import associated_data, email_index, open_text
from tests.conftest import BACKEND, POSTGRES_ADMIN_DSN

REPO = Path(__file__).resolve().parents[1]
MASTER = secrets.token_bytes(32)
SECRET = secrets.token_bytes(32)
RING = KeyRing({"m1": MASTER}, "m1")
ENV = {
    "MASTER_KEYS": f"m1:{base64.b64encode(MASTER).decode()}",
    "SECRET_KEY": base64.b64encode(SECRET).decode(),
}
ADDRESS = {"line1": "Altweg 3", "postalCode": "01067", "city": "Dresden", "country": "DE"}
COMPANY, USER, MODEL, COMMENT, ORDER, INVITATION = (uuid.uuid4() for _ in range(6))
PLAINTEXT = ["Old.Mail@Example.com", "old.mail@example.com", "+49 351 111222", "Altweg 3",
             "Dresden", "198.51.100.77", "alte Notiz 42", "USt-Id DE999", "Olgarina", "Oldenbuttel"]


@pytest.fixture
async def empty_database(tmp_path: Path) -> AsyncIterator[str]:
    if BACKEND == "sqlite":
        yield f"sqlite://{tmp_path / 'old.sqlite3'}"
        return
    name = f"pv_mig_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL not reachable (REQUIRE_POSTGRES=1): {error}", pytrace=False)
        pytest.skip(f"PostgreSQL not reachable: {error}")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _python(code: str, url: str, data_dir: Path) -> None:
    env = {**os.environ, **ENV, "DATABASE_URL": url, "DATA_DIR": str(data_dir)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


MIGRATE_TO_0007 = """
import asyncio, os
from tortoise.migrations.api import migrate
from storage.db import tortoise_config, disconnect
async def main():
    await migrate(config=tortoise_config(os.environ["DATABASE_URL"]),
                  target="models.0007_materials_and_quotes")
    await disconnect()
asyncio.run(main())
"""

READ_BACK = """
import asyncio, os
from runtime.services import sealing_keys
from runtime.settings import load_settings
from storage import db
from storage.models import Comment, Order, User
from storage.queries import find_user_by_email
async def main():
    await db.connect(os.environ["DATABASE_URL"], sealing_keys(load_settings()), apply_migrations=False)
    user = await find_user_by_email("OLD.MAIL@example.com")
    order = await Order.get(id="%s")
    comment = await Comment.get(id="%s")
    print(user.email, user.first_name, user.phone, user.address["city"], order.billing_info,
          order.shipping_address["line1"], comment.body, comment.ip)
    await db.disconnect()
asyncio.run(main())
""" % (ORDER, COMMENT)


async def _execute(url: str, statements: list[tuple[str, list[Any]]]) -> None:
    if url.startswith("sqlite://"):
        with sqlite3.connect(url.removeprefix("sqlite://")) as connection:
            for sql, params in statements:
                connection.execute(sql, [str(p) if isinstance(p, uuid.UUID) else p for p in params])
        return
    connection = await asyncpg.connect(url)
    try:
        for sql, params in statements:
            for n in range(1, len(params) + 1):
                sql = sql.replace("?", f"${n}", 1)
            await connection.execute(sql, *params)
    finally:
        await connection.close()


async def _rows(url: str, sql: str) -> list[dict[str, Any]]:
    if url.startswith("sqlite://"):
        with sqlite3.connect(url.removeprefix("sqlite://")) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(sql)]
    connection = await asyncpg.connect(url)
    try:
        return [dict(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


def _old_rows() -> list[tuple[str, list[Any]]]:
    now = datetime.now(UTC)
    address = json.dumps(ADDRESS)
    return [
        ("INSERT INTO company (id, name, kind, address, created_at) VALUES (?, ?, ?, ?, ?)",
         [COMPANY, "Altbau AG", "CUSTOMER", address, now]),
        ("INSERT INTO app_user (id, email, first_name, last_name, phone, address, role, company_id,"
         " is_company_admin, password_hash, mfa_enabled, totp_last_step, created_at, signup_ip)"
         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
         [USER, "old.mail@example.com", "Olgarina", "Oldenbuttel", "+49 351 111222", address, "CUSTOMER",
          COMPANY, True, "x", False, 0, now, "198.51.100.77"]),
        ("INSERT INTO session (token_hash, user_id, created_at, last_seen_at, expires_at, ip)"
         " VALUES (?, ?, ?, ?, ?, ?)",
         ["a" * 64, USER, now, now, now + timedelta(hours=1), "198.51.100.77"]),
        ("INSERT INTO invitation (id, token_hash, email, role, company_id, created_at, expires_at)"
         " VALUES (?, ?, ?, ?, ?, ?, ?)",
         [INVITATION, "b" * 64, "Invited.Person@Example.com", "CUSTOMER", COMPANY, now,
          now + timedelta(days=1)]),
        ("INSERT INTO model3d (id, company_id, owner_id, name, file_name, file_size, format,"
         " object_key, wrapped_key, created_at, upload_ip, analysis_status, analysis_attempts)"
         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
         [MODEL, COMPANY, USER, "part", "part.stl", 1, "stl", "models/x", "v1:m1:AA", now,
          "198.51.100.77", "DONE", 0]),
        ("INSERT INTO comment (id, model_id, author_id, body, created_at, ip)"
         " VALUES (?, ?, ?, ?, ?, ?)",
         [COMMENT, MODEL, USER, "alte Notiz 42", now, "198.51.100.77"]),
        ("INSERT INTO print_order (id, model_id, customer_id, company_id, status, quantity,"
         " material, shipping_address, billing_address, billing_info, created_at, ip, version)"
         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
         [ORDER, MODEL, USER, COMPANY, "REQUESTED", 1, "PLA", address, address, "USt-Id DE999",
          now, "198.51.100.77", 1]),
        ("INSERT INTO order_event (order_id, status, at, by_id, ip) VALUES (?, ?, ?, ?, ?)",
         [ORDER, "REQUESTED", now, USER, "198.51.100.77"]),
        ("INSERT INTO audit_event (at, kind, actor_id, ip, detail) VALUES (?, ?, ?, ?, ?)",
         [now, "signup", USER, "198.51.100.77", "{}"]),
    ]


@pytest.mark.db  # runs again on PostgreSQL (its own database, not the `database` fixture)
async def test_migration_seals_existing_rows(empty_database: str, tmp_path: Path) -> None:
    url, data_dir = empty_database, tmp_path / "data"
    await asyncio.to_thread(_python, MIGRATE_TO_0007, url, data_dir)
    await _execute(url, _old_rows())

    await asyncio.to_thread(_python, "from web.cli import main; main(['migrate'])", url, data_dir)

    user = (await _rows(url, "SELECT * FROM app_user"))[0]
    text = json.dumps(
        {table: await _rows(url, f"SELECT * FROM {table}") for table in
         ("company", "app_user", "session", "invitation", "model3d", "comment", "print_order",
          "order_event", "audit_event")},
        default=str,
    )
    assert "Altbau AG" in text  # the control: not personal, still plaintext
    assert [needle for needle in PLAINTEXT if needle in text] == []

    def opened(table: str, column: str, row: dict[str, Any], bound: bool = True) -> str:
        aad = associated_data(table, column, row["id"] if bound else None)
        return open_text(row[column], aad, RING)

    assert opened("app_user", "email", user) == "old.mail@example.com"
    assert user["email_index"] == email_index("Old.Mail@example.com", SECRET)
    assert json.loads(opened("app_user", "address", user)) == ADDRESS
    assert opened("app_user", "signup_ip", user) == "198.51.100.77"
    session = (await _rows(url, "SELECT * FROM session"))[0]
    assert opened("session", "ip", session, bound=False) == "198.51.100.77"
    invitation = (await _rows(url, "SELECT * FROM invitation"))[0]
    assert invitation["email_index"] == email_index("invited.person@example.com", SECRET)

    # And the application reads it all back.
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", READ_BACK],
        cwd=REPO,
        env={**os.environ, **ENV, "DATABASE_URL": url, "DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [
        "old.mail@example.com", "Olgarina", "+49", "351", "111222", "Dresden", "USt-Id", "DE999", "Altweg",
        "3", "alte", "Notiz", "42", "198.51.100.77",
    ]
