"""Backups: encrypted, pruned, tamper-evident, and restorable (the restore drill).

Every test that takes `database` runs on SQLite and again on PostgreSQL. The
comparison reads both databases with plain sqlite3 / asyncpg connections, not
through tortoise, whose connections are global to the process.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from runtime.backups import run_backup, run_restore, scheduled_backup
from storage.backup import (
    BackupDamaged,
    BackupError,
    TargetNotEmpty,
    list_backups,
    make_backup,
    restore_backup,
)
from storage.crypto import KeyRing, WrappedKey, decrypt_bytes, unwrap
from storage.models import (
    AccountToken,
    AnalysisStatus,
    ApiToken,
    AuditEvent,
    Comment,
    Company,
    CompanyKind,
    Invitation,
    MaintenanceRun,
    Material,
    Model3D,
    ModelMetadata,
    ModelPreview,
    NoticeOptOut,
    Order,
    OrderEvent,
    OrderStatus,
    ProviderMaterial,
    Quote,
    RecoveryCode,
    Role,
    Session,
    User,
    Webhook,
    WebhookDelivery,
)
from storage.objects import LocalObjectStore
from tests.conftest import BACKEND, POSTGRES_ADMIN_DSN, TABLES
from tests.helpers import ADDRESS_DICT

K1 = secrets.token_bytes(32)
K2 = secrets.token_bytes(32)
RING = KeyRing({"k1": K1}, "k1")
MARKER = "backup-marker-7f3a9c"

FreshDatabase = Callable[[], Awaitable[str]]


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


@pytest.fixture
async def fresh_database(tmp_path: Path) -> AsyncIterator[FreshDatabase]:
    """Makes empty databases on the run's backend; PostgreSQL ones are dropped afterwards."""
    made: list[str] = []

    async def make() -> str:
        name = f"pv_restore_{secrets.token_hex(4)}"
        if BACKEND == "sqlite":
            return f"sqlite://{tmp_path / (name + '.sqlite3')}"
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        made.append(name)
        return POSTGRES_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name

    yield make
    if made:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        try:
            for name in made:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# --- filling and reading databases ---------------------------------------------------


async def fill() -> None:
    """A row in every table, through the ORM, with awkward values (quotes, umlauts, None)."""
    customer = await Company.create(
        name="Müller & Söhne 'GmbH' \"x\"", kind=CompanyKind.CUSTOMER, address=ADDRESS_DICT
    )
    provider = await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
    user = await User.create(
        email=f"{MARKER}@example.com",
        first_name="Jürgen",
        last_name="O'Brien",
        phone="+49 30 1234567",
        address=ADDRESS_DICT,
        role=Role.CUSTOMER,
        company=customer,
        is_company_admin=True,
        password_hash="$argon2id$v=19$fake",
        totp_last_step=2**40,
    )
    maker = await User.create(
        email="maker@example.com",
        first_name="P",
        last_name="Q",
        role=Role.PROVIDER,
        company=provider,
        password_hash="x",
    )
    await User.create(
        email="staff@example.com",
        first_name="S",
        last_name="T",
        role=Role.STAFF,
        password_hash="x",
        mfa_enabled=True,
    )
    now = datetime.now(UTC)
    await RecoveryCode.create(user=user, code_hash="a" * 64)
    await Session.create(
        token_hash="b" * 64,
        user=user,
        last_seen_at=now,
        expires_at=now + timedelta(hours=2),
        ip="203.0.113.7",
    )
    await ApiToken.create(name="partner", token_hash="c" * 64, user=user)
    await Invitation.create(
        token_hash="d" * 64,
        email="new@example.com",
        role=Role.CUSTOMER,
        company=customer,
        invited_by=user,
        expires_at=now + timedelta(days=7),
    )
    model = await Model3D.create(
        company=customer,
        owner=user,
        name="Halterung ø12",
        file_name="bracket.stl",
        file_size=684,
        format="stl",
        object_key=f"models/{uuid.uuid4()}",
        wrapped_key="v1:k1:AAAA",
        upload_ip="2001:db8::1",
        analysis_status=AnalysisStatus.DONE,
    )
    await ModelMetadata.create(
        model=model,
        file_name="bracket.stl",
        file_size=684,
        format="stl",
        size_x=10.0,
        size_y=20.5,
        size_z=1e-3,
        volume=6000.123456789,
        surface_area=2200.0,
        triangle_count=12,
        body_count=1,
        is_watertight=True,
        printable=False,
        issues=[{"code": "THIN_WALL", "severity": "warning", "message": "< 0.8 mm"}],
        hull_sealed=bytes(range(256)) + b"\x00'\"",  # binary, as sealed blobs are
        walls_sealed=None,
    )
    pla = await Material.create(code="PLA", active=True, spec={"code": "PLA", "price": "0.12"})
    await ProviderMaterial.create(company=provider, material=pla)
    quote = await Quote.create(
        model=model,
        company=customer,
        created_by=user,
        material_code="PLA",
        snapshot={"price": {"total": "21.00"}, "issues": [], "name": "Müller 'x'"},
        created_at=now,
        expires_at=now + timedelta(days=14),
    )
    await AccountToken.create(
        purpose="reset", token_hash="e" * 64, user=user, expires_at=now + timedelta(hours=1)
    )
    await ModelPreview.create(
        model=model,
        glb_key=f"previews/{model.id.hex}/glb-1",
        png_key=f"previews/{model.id.hex}/png-1",
        glb_size=4096,
        png_size=512,
        triangles=12,
    )
    await Comment.create(model=model, author=user, body="Bitte in PETG.\nZweite Zeile 'x'")
    order = await Order.create(
        model=model,
        customer=user,
        company=customer,
        provider=provider,
        status=OrderStatus.ASSIGNED,
        quantity=3,
        material="PETG",
        shipping_address=ADDRESS_DICT,
        billing_address=ADDRESS_DICT,
        billing_info=None,
        quote=quote,
        price=Decimal("1234567.89"),
        currency="EUR",
    )
    await OrderEvent.create(order=order, status=OrderStatus.REQUESTED, by=user)
    await OrderEvent.create(order=order, status=OrderStatus.ASSIGNED, by=maker, note="ok")
    await AuditEvent.create(
        kind="auth.signup",
        actor_id=user.id,
        ip="203.0.113.7",
        detail={"note": MARKER},  # not personal: the plaintext control of the tests below
    )
    await AuditEvent.create(kind="order.assign", order_id=order.id, detail={})
    await MaintenanceRun.create(name="backup", last_started_at=now, last_error="Timeout")
    hook = await Webhook.create(
        company=provider, url="https://mes.example.com/hook?x='1'", events=["order.assigned"],
        secret_sealed="sealed", created_by_id=maker.id,
    )
    await WebhookDelivery.create(
        webhook=hook, message_id="msg_1", event="order.assigned", body='{"a":"ü"}',
        attempt=2, status="FAILED", response_code=503, error="timeout",
        next_attempt_at=now, lease_until=None,
    )
    await NoticeOptOut.create(user=maker)


async def snapshot(url: str) -> dict[str, Any]:
    """Schema and every row of every table, in primary-key order."""
    if url.startswith("sqlite://"):
        return await asyncio.to_thread(_sqlite_snapshot, Path(url.removeprefix("sqlite://")))
    return await _postgres_snapshot(url)


def _sqlite_snapshot(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"schema": [], "rows": {}}
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        schema = connection.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        rows = {}
        for _, table, _, _ in (s for s in schema if s[0] == "table"):
            info = connection.execute(f'PRAGMA table_info("{table}")').fetchall()
            keys = [c[1] for c in sorted(info, key=lambda c: c[5]) if c[5]] or [c[1] for c in info]
            order = ", ".join(f'"{k}"' for k in keys)
            rows[table] = connection.execute(f'SELECT * FROM "{table}" ORDER BY {order}').fetchall()
        return {"schema": schema, "rows": rows}
    finally:
        connection.close()


_PG_SCHEMA = """
    SELECT table_name, column_name, data_type, is_nullable, column_default
    FROM information_schema.columns WHERE table_schema = 'public'
    ORDER BY table_name, ordinal_position
"""
_PG_CONSTRAINTS = """
    SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2
"""
_PG_PRIMARY_KEY = """
    SELECT a.attname FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
    WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY a.attnum
"""


async def _postgres_snapshot(url: str) -> dict[str, Any]:
    connection = await asyncpg.connect(url)
    try:
        tables = [
            r[0]
            for r in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        rows = {}
        for table in tables:
            keys = [r[0] for r in await connection.fetch(_PG_PRIMARY_KEY, f'"{table}"')]
            order = ", ".join(f'"{k}"' for k in keys) or "1"
            records = await connection.fetch(f'SELECT * FROM "{table}" ORDER BY {order}')
            rows[table] = [tuple(r) for r in records]
        return {
            "schema": [tuple(r) for r in await connection.fetch(_PG_SCHEMA)],
            "constraints": [tuple(r) for r in await connection.fetch(_PG_CONSTRAINTS)],
            "indexes": [
                tuple(r)
                for r in await connection.fetch(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
                )
            ],
            # Restored sequences must continue where the original stopped.
            "sequences": [
                tuple(r)
                for r in await connection.fetch(
                    "SELECT sequencename, last_value FROM pg_sequences ORDER BY 1"
                )
            ],
            "rows": rows,
        }
    finally:
        await connection.close()


def stored(store: LocalObjectStore, key: str) -> Path:
    return store.root / key


# --- the restore drill ---------------------------------------------------------------


async def test_restore_drill(database: str, store, fresh_database: FreshDatabase) -> None:
    """Fill every table, back up, restore into a fresh database, compare row by row.

    The backup is taken under master key k1 and restored after a rotation, with
    k2 active and k1 kept only to unwrap.
    """
    await fill()
    before = await snapshot(database)
    assert all(before["rows"][table] for table in TABLES), "the fill must reach every table"

    key = await make_backup(database, store, RING)
    target = await fresh_database()
    rotated = KeyRing({"k2": K2, "k1": K1}, "k2")
    await restore_backup(target, store, rotated, key)

    after = await snapshot(target)
    assert after == before
    # Personal data came back sealed (issue 10.5): the restored rows, read as a thief
    # with the database but not the master keys reads them, hold none of it.
    text = repr(after["rows"])
    assert "Druck AG" in text and MARKER in text  # the control: plaintext columns are there
    for personal in (f"{MARKER}@example.com", "+49 30 1234567", "Hauptstr", "203.0.113.7",
                     "2001:db8::1", "Bitte in PETG", "new@example.com", "O'Brien"):
        assert personal not in text, personal
    assert "tortoise_migrations" in after["rows"]  # the schema version comes along
    if BACKEND == "sqlite":
        mode = os.stat(target.removeprefix("sqlite://")).st_mode
        assert mode & 0o077 == 0  # as private as the original


async def test_backup_of_an_empty_database(database: str, store, fresh_database) -> None:
    """Migrated but without rows; and a database without even tables."""
    key = await make_backup(database, store, RING)
    target = await fresh_database()
    await restore_backup(target, store, RING, key)
    restored = await snapshot(target)
    assert restored == await snapshot(database)
    assert not any(restored["rows"][table] for table in TABLES)

    bare = await fresh_database()
    if BACKEND == "sqlite":
        await asyncio.to_thread(Path(bare.removeprefix("sqlite://")).touch)  # an empty file
    second = await fresh_database()
    await restore_backup(second, store, RING, await make_backup(bare, store, RING))
    assert (await snapshot(second))["rows"] == {}


# --- confidentiality and integrity ---------------------------------------------------


async def test_backup_holds_no_plaintext(database: str, store) -> None:
    await fill()
    key = await make_backup(database, store, RING)
    raw = stored(store, key).read_bytes()
    for needle in (MARKER.encode(), b"app_user", b"CREATE TABLE", b"Hauptstr", b"PETG"):
        assert needle not in raw

    # The control: the format as documented does hold those, once decrypted.
    line, _, sealed = raw.partition(b"\n")
    header = json.loads(line)
    assert header["backend"] == BACKEND and header["version"] == 1
    data_key = unwrap(RING, WrappedKey.from_str(header["wrapped_key"]))
    payload = decrypt_bytes(sealed, data_key, key.encode() + b"\n" + line)
    if BACKEND == "sqlite":
        payload = zlib.decompress(payload)
        assert MARKER.encode() in payload
        # ...but not the sealed personal data (issue 10.5; PostgreSQL's compressed
        # dump is read as SQL in test_personal_data_at_rest.py).
        for personal in (f"{MARKER}@example.com", "+49 30 1234567", "Hauptstr", "203.0.113.7"):
            assert personal.encode() not in payload, personal
    else:
        assert payload.startswith(b"PGDMP")  # pg_dump's custom format
    assert b"CREATE TABLE" in payload and b"app_user" in payload


def _flip(data: bytearray, at: int) -> None:
    data[at] ^= 0x01


TAMPERINGS: dict[str, Callable[[bytearray, int], None]] = {
    "header time": lambda data, body: data.__setitem__(
        slice(0, body), data[:body].replace(b'"created_at":"20', b'"created_at":"19')
    ),
    "first payload byte": lambda data, body: _flip(data, body),
    "middle byte": lambda data, body: _flip(data, (body + len(data)) // 2),
    "last byte": lambda data, body: _flip(data, len(data) - 1),
    "truncated": lambda data, body: data.__delitem__(slice(len(data) - 20, None)),
}


@pytest.mark.parametrize("how", list(TAMPERINGS))
async def test_tampered_backup_refuses_and_leaves_target_untouched(
    database: str, store, fresh_database, how: str
) -> None:
    await fill()
    key = await make_backup(database, store, RING)
    path = stored(store, key)
    data = bytearray(path.read_bytes())
    original = bytes(data)
    TAMPERINGS[how](data, data.index(b"\n") + 1)
    assert bytes(data) != original
    path.write_bytes(bytes(data))

    target = await fresh_database()
    empty = await snapshot(target)
    with pytest.raises(BackupDamaged, match="authentication"):
        await restore_backup(target, store, RING, key)
    assert await snapshot(target) == empty


async def test_restore_refuses_a_database_with_tables(database: str, store) -> None:
    await fill()
    key = await make_backup(database, store, RING)
    before = await snapshot(database)
    with pytest.raises(TargetNotEmpty, match="restore only into an empty database"):
        await restore_backup(database, store, RING, key)
    assert await snapshot(database) == before


async def test_restore_needs_the_master_key_of_the_backup(
    database: str, store, fresh_database
) -> None:
    key = await make_backup(database, store, RING)
    without_k1 = KeyRing({"k2": K2}, "k2")
    target = await fresh_database()
    with pytest.raises(BackupError, match="'k1' is not in the key ring"):
        await restore_backup(target, store, without_k1, key)
    assert (await snapshot(target))["rows"] == {}


def _sqlite_file(tmp_path: Path) -> str:
    path = tmp_path / "small.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (x TEXT)")
    return f"sqlite://{path}"


async def test_restore_refuses_another_backend(tmp_path: Path, store) -> None:
    key = await make_backup(_sqlite_file(tmp_path), store, RING)
    with pytest.raises(BackupError, match="sqlite backup; it cannot be restored into a postgres"):
        # Refused from the header alone: nothing tries to reach this server.
        await restore_backup("postgres://nobody@192.0.2.1:1/x", store, RING, key)


async def test_missing_backup_and_foreign_object(tmp_path: Path, store) -> None:
    target = f"sqlite://{tmp_path / 'target.sqlite3'}"
    with pytest.raises(BackupError, match=r"no backup 'backups/nope\.pvbak'"):
        await restore_backup(target, store, RING, "backups/nope.pvbak")
    await store.put("backups/notes.txt", _chunks(b"not a backup at all"))
    with pytest.raises(BackupDamaged, match="no backup header"):
        await restore_backup(target, store, RING, "backups/notes.txt")


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_missing_database_is_reported(database: str, store, tmp_path: Path) -> None:
    if BACKEND == "sqlite":
        missing = f"sqlite://{tmp_path / 'missing.sqlite3'}"
    else:
        missing = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0] + "/pv_no_such_database"
    with pytest.raises(BackupError, match="does not exist"):
        await make_backup(missing, store, RING)
    assert [item async for item in store.list()] == []  # a failed dump stores nothing
    if BACKEND == "postgres":  # (a missing SQLite file is simply created)
        key = await make_backup(database, store, RING)
        with pytest.raises(BackupError, match="cannot connect to database 'pv_no_such_database'"):
            await restore_backup(missing, store, RING, key)


# --- retention, listing, scheduling ---------------------------------------------------


async def test_retention_keeps_the_newest_and_lists_newest_first(database: str, store) -> None:
    await store.put("backups/notes.txt", _chunks(b"operator's notes, not a backup"))
    keys = [await make_backup(database, store, RING, keep=3) for _ in range(5)]

    listed = await list_backups(store)
    assert [info.key for info in listed] == keys[:1:-1]  # the last three, newest first
    assert [info.created_at for info in listed] == sorted(
        (info.created_at for info in listed), reverse=True
    )
    assert all(info.backend == BACKEND and info.size > 0 for info in listed)
    assert not await store.exists(keys[0]) and not await store.exists(keys[1])
    assert await store.exists("backups/notes.txt")  # not ours: never pruned


async def test_scheduled_backup_runs_once_per_period(database: str, store, settings) -> None:
    settings = replace(settings, database_url=database, backup_period_seconds=24 * 3600)
    # Several processes' schedulers firing at the same moment.
    results = await asyncio.gather(*(scheduled_backup(settings, store, RING) for _ in range(4)))
    made = [key for key in results if key]
    assert len(made) == 1
    assert [info.key for info in await list_backups(store)] == made
    assert await scheduled_backup(settings, store, RING) is None  # the last one is recent
    assert await scheduled_backup(settings, store, RING, period_seconds=0)  # now it is due


async def test_backup_and_restore_commands(
    database: str, settings, tmp_path: Path, fresh_database
) -> None:
    """What `server.py backup` and `server.py restore BACKUP` run."""
    await fill()
    source = replace(settings, database_url=database, storage_url=f"file://{tmp_path / 'o'}")
    key = await run_backup(source)
    target = replace(source, database_url=await fresh_database())
    await run_restore(target, key.removeprefix("backups/"))  # the prefix may be left out
    assert await snapshot(target.database_url) == await snapshot(database)


async def test_a_backup_cut_at_a_segment_boundary_restores_nothing(
    database: str, store, fresh_database
) -> None:
    """Every segment left is authentic; only the missing end gives the cut away,
    so the whole backup must be verified before anything is applied."""
    await fill()
    # Incompressible rows, so the payload spans several 64 KiB segments.
    await AuditEvent.bulk_create(
        [AuditEvent(kind="bulk", detail={"noise": secrets.token_hex(1024)}) for _ in range(300)]
    )
    key = await make_backup(database, store, RING)
    path = stored(store, key)
    data = path.read_bytes()
    body = data.index(b"\n") + 1
    segment = 64 * 1024 + 16
    full_segments = (len(data) - body - 32 - 17) // segment
    assert full_segments >= 3
    path.write_bytes(data[: body + 32 + full_segments * segment])  # the last segment dropped

    target = await fresh_database()
    with pytest.raises(BackupDamaged, match="authentication"):
        await restore_backup(target, store, RING, key)
    assert (await snapshot(target))["rows"] == {}
