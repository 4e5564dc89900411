"""Periodic work: IP retention, clean-up of abandoned objects, backups.

Every server and worker process runs the loop (from the job engine's sweep);
a task runs where it first claims its row in `maintenance_run`, a conditional
update, so each runs once per period however many processes there are.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.timezone import now

from domain.ip_retention import truncate_old_ips
from domain.preview_job import PREFIX as PREVIEW_PREFIX
from domain.uploads import OBJECT_PREFIX
from runtime.settings import Settings
from storage.crypto import KeyRing
from storage.models import MaintenanceRun, Model3D, ModelPreview
from storage.objects import ObjectStore

log = logging.getLogger("printvault.maintenance")


@dataclass(frozen=True)
class Task:
    name: str
    period: timedelta
    run: Callable[[Settings, ObjectStore, KeyRing], Awaitable[object]]


async def remove_abandoned_objects(settings: Settings, store: ObjectStore, _: KeyRing) -> int:
    """Objects with no model row (a server killed between storing and the row, or a
    failed delete), and half-written uploads, once older than the grace period."""
    cutoff = now() - timedelta(seconds=settings.orphan_grace_seconds)
    removed = await store.remove_incomplete(cutoff)
    async for info in store.list(OBJECT_PREFIX):
        if info.modified < cutoff and not await Model3D.exists(object_key=info.key):
            await store.delete(info.key)
            removed += 1
    async for info in store.list(PREVIEW_PREFIX):
        if info.modified < cutoff and not await _is_preview(info.key):
            await store.delete(info.key)
            removed += 1
    if removed:
        log.info("removed %d abandoned object(s)", removed)
    return removed


async def _is_preview(key: str) -> bool:
    return await ModelPreview.exists(Q(glb_key=key) | Q(png_key=key))


async def _truncate_ips(settings: Settings, _store: ObjectStore, _ring: KeyRing) -> int:
    return await truncate_old_ips(settings.ip_retention_days)


def tasks(settings: Settings) -> list[Task]:
    found = [
        Task("ip_retention", timedelta(hours=1), _truncate_ips),
        # Looked for as often as the grace period, at most hourly.
        Task(
            "abandoned_objects",
            timedelta(seconds=min(3600, settings.orphan_grace_seconds)),
            remove_abandoned_objects,
        ),
    ]
    if settings.backup_period_seconds > 0:
        from runtime.backups import scheduled_backup

        found.append(
            Task("backup", timedelta(seconds=settings.backup_period_seconds), scheduled_backup)
        )
    return found


async def claim(name: str, period: timedelta) -> bool:
    """True for exactly one caller per period."""
    current = now()
    try:
        await MaintenanceRun.create(name=name, last_started_at=current)
        return True
    except IntegrityError:
        pass
    due = Q(name=name) & Q(last_started_at__lte=current - period)
    return await MaintenanceRun.filter(due).update(last_started_at=current) == 1


async def run_due(settings: Settings, store: ObjectStore, ring: KeyRing) -> list[str]:
    """Run every task whose period has passed; one failing task does not stop the others."""
    ran = []
    for task in tasks(settings):
        if not await claim(task.name, task.period):
            continue
        error = None
        try:
            await task.run(settings, store, ring)
        except Exception as exc:  # logged and recorded; retried next period
            log.exception("maintenance task %s failed", task.name)
            error = type(exc).__name__
        await MaintenanceRun.filter(name=task.name).update(last_finished_at=now(), last_error=error)
        ran.append(task.name)
    return ran
