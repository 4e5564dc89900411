"""The SQLite engine: tortoise's, with a transaction entry that cleans up when cancelled
and an exit that ends the transaction before a cancellation goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Coroutine
from typing import Any

from tortoise.backends.base.client import TransactionalDBClient, TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections
from tortoise.exceptions import TransactionManagementError

log = logging.getLogger(__name__)


class SafeSqliteTransactionContext(SqliteTransactionContext):
    async def __aenter__(self) -> TransactionalDBClient:
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            try:
                # aiosqlite runs statements in order on its own thread, and a
                # cancelled await does not withdraw one: the BEGIN may still run.
                # A ROLLBACK queued behind it ends that transaction (or does
                # nothing), and is queued before the lock lets anyone else in.
                await asyncio.shield(self._roll_back())
            finally:
                self._trxlock.release()
            raise
        return self.connection

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        try:
            if not self.connection._finalized:
                if not exc_type:
                    await _to_the_end(self.connection.commit())
                elif exc_type is not TransactionManagementError:
                    await _to_the_end(self.connection.rollback())
        finally:
            get_connections().reset(self.token)
            self._trxlock.release()

    async def _roll_back(self) -> None:
        raw = self.connection._connection
        if raw is not None:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await raw.rollback()


async def _to_the_end(ending: Coroutine[Any, Any, Any]) -> None:
    """COMMIT or ROLLBACK, awaited to its end even if the caller is cancelled meanwhile.

    A cancelled await does not withdraw the statement from aiosqlite's thread: it
    runs anyway. Tortoise's exit released the lock at once, so a task "cancelled and
    gone" could leave its transaction open a moment longer, seen by the next reader
    of the connection's state. Here the cancellation goes on once the statement ran."""
    task = asyncio.ensure_future(ending)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.warning("ending a cancelled transaction failed: %s", task.exception())
        raise


class SafeSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return SafeSqliteTransactionContext(SqliteTransactionWrapper(self), self._lock)


client_class = SafeSqliteClient
