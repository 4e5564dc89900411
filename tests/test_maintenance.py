"""Periodic maintenance: claimed once per period, IP retention, abandoned objects."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from tortoise.timezone import now

from domain import maintenance
from domain.ip_retention import truncate, truncate_old_ips
from storage.crypto import KeyRing
from storage.models import AuditEvent, Model3D, User
from storage.objects import LocalObjectStore
from tests.conftest import serving
from tests.helpers import box_stl


def test_truncate() -> None:
    assert truncate("203.0.113.57") == "203.0.113.0/24"
    assert truncate("2001:db8:1:2:3:4:5:6") == "2001:db8:1::/48"
    assert truncate("garbage") == "unknown"


async def test_ips_older_than_the_retention_are_truncated(database) -> None:
    old = now() - timedelta(days=31)
    user = await User.create(
        email="old@example.com", first_name="O", last_name="Ld", role="STAFF", password_hash="x",
        signup_ip="198.51.100.23",
    )
    await User.filter(id=user.id).update(created_at=old)
    event = await AuditEvent.create(kind="x", ip="2001:db8:aa:bb::1")
    await AuditEvent.filter(id=event.id).update(at=old)
    fresh = await AuditEvent.create(kind="y", ip="198.51.100.99")
    changed = await truncate_old_ips(30)
    assert changed == 2
    assert (await User.get(id=user.id)).signup_ip == "198.51.100.0/24"
    assert (await AuditEvent.get(id=event.id)).ip == "2001:db8:aa::/48"
    assert (await AuditEvent.get(id=fresh.id)).ip == "198.51.100.99"
    assert await truncate_old_ips(30) == 0  # idempotent


async def test_each_task_runs_once_per_period_across_processes(database) -> None:
    results = await asyncio.gather(*(maintenance.claim("t", timedelta(hours=1)) for _ in range(5)))
    assert results.count(True) == 1
    assert not await maintenance.claim("t", timedelta(hours=1))
    assert await maintenance.claim("t", timedelta(seconds=0))


async def test_abandoned_objects_and_half_writes_are_removed(
    database, settings, tmp_path: Path
) -> None:
    store_dir = tmp_path / "objects"
    quick = replace(settings, storage_url=f"file://{store_dir}", orphan_grace_seconds=60)
    async with serving(quick) as api:
        caller = await api.customer()
        kept = (await api.upload(box_stl(), token=caller.token)).json()["data"]["uploadModel"]["id"]
    store = LocalObjectStore(store_dir)

    async def chunks():
        yield b"ciphertext of a model whose row was never written"

    await store.put("models/orphan", chunks())
    (store_dir / "models" / ".put~crashed").write_bytes(b"half written ciphertext")
    young = store_dir / "models" / "young-orphan"
    young.write_bytes(b"x")
    past = time.time() - 3600
    for path in (store_dir / "models").iterdir():
        if path.name != "young-orphan":
            os.utime(path, (past, past))
    ring = KeyRing(quick.master_keys, quick.active_key_id)
    removed = await maintenance.remove_abandoned_objects(quick, store, ring)
    assert removed == 2
    remaining = {p.name for p in (store_dir / "models").iterdir()}
    row = await Model3D.get(id=kept)
    assert remaining == {row.object_key.split("/")[1], "young-orphan"}


async def test_run_due_records_each_run(database, settings, tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    ring = KeyRing(settings.master_keys, settings.active_key_id)
    assert set(await maintenance.run_due(settings, store, ring)) == {
        "ip_retention",
        "abandoned_objects",
    }
    assert await maintenance.run_due(settings, store, ring) == []
