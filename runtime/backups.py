"""When to back up: the scheduled job, and the `backup` / `restore` commands.

The mechanics (dump, encrypt, store, prune, restore) are in storage/backup.py;
this module decides when a backup is due and wires settings to them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from runtime.services import key_ring, object_store
from runtime.settings import Settings
from storage.backup import (
    PREFIX,
    backup_lock,
    list_backups,
    make_backup,
    restore_backup,
)
from storage.crypto import KeyRing
from storage.objects import ObjectStore

log = logging.getLogger("printvault.backups")


async def scheduled_backup(
    settings: Settings,
    store: ObjectStore,
    ring: KeyRing,
    *,
    period_seconds: int | None = None,
    keep: int | None = None,
) -> str | None:
    """The periodic job: back up unless a recent backup exists; the new key or None.

    Period and retention default to BACKUP_PERIOD_SECONDS and BACKUP_KEEP.
    Safe when several processes fire it at the same moment, also without the
    maintenance claim: the lock lets one of them work while the others skip at
    once, and a process that gets the lock just after another finished sees
    that fresh backup (newer than half a period) and skips too.
    """
    period = settings.backup_period_seconds if period_seconds is None else period_seconds
    async with backup_lock(settings.database_url) as held:
        if not held:
            log.info("backup skipped: another process is backing up")
            return None
        newest = await _newest_backup_time(store)
        if newest and datetime.now(UTC) - newest < timedelta(seconds=period / 2):
            log.info("backup skipped: the last one is from %s", newest.isoformat())
            return None
        key = await make_backup(
            settings.database_url, store, ring, settings.backup_keep if keep is None else keep
        )
    log.info("backup written: %s", key)
    return key


async def _newest_backup_time(store: ObjectStore) -> datetime | None:
    backups = await list_backups(store)
    return backups[0].created_at if backups else None


# --- commands (server.py backup / restore BACKUP) -------------------------------


async def run_backup(settings: Settings) -> str:
    """`server.py backup`: one backup now, whatever the schedule; returns its key."""
    store = object_store(settings)
    try:
        return await make_backup(
            settings.database_url, store, key_ring(settings), settings.backup_keep
        )
    finally:
        await store.close()


async def run_restore(settings: Settings, backup: str) -> None:
    """`server.py restore BACKUP`: BACKUP is the object key, with or without `backups/`."""
    key = backup if backup.startswith(PREFIX) else PREFIX + backup
    store = object_store(settings)
    try:
        await restore_backup(settings.database_url, store, key_ring(settings), key)
    finally:
        await store.close()
