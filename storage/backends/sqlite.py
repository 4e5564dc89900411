"""The SQLite engine: tortoise's, with a transaction entry that cleans up when cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

from tortoise.backends.base.client import TransactionalDBClient, TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections


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

    async def _roll_back(self) -> None:
        raw = self.connection._connection
        if raw is not None:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await raw.rollback()


class SafeSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return SafeSqliteTransactionContext(SqliteTransactionWrapper(self), self._lock)


client_class = SafeSqliteClient
