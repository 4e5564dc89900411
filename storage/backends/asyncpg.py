"""The PostgreSQL engine: tortoise's asyncpg client, with a transaction entry
that hands its pooled connection back when cancelled."""

from __future__ import annotations

import asyncio

from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import (
    TransactionalDBClient,
    TransactionContext,
    TransactionContextPooled,
)
from tortoise.connection import get_connections


class SafePooledTransactionContext(TransactionContextPooled):
    async def __aenter__(self) -> TransactionalDBClient:
        await self.ensure_connection()
        pool = self.client._parent._pool
        self.client._connection = await pool.acquire()
        self.token = get_connections().set(self.connection_name, self.client)
        try:
            await self.client.begin()
        except BaseException:
            get_connections().reset(self.token)
            # asyncpg's release rolls back an open transaction (and closes a
            # connection left mid-statement); shielded so a second cancel
            # cannot leak it either.
            await asyncio.shield(pool.release(self.client._connection))
            raise
        return self.client


class SafeAsyncpgClient(AsyncpgDBClient):
    def _in_transaction(self) -> TransactionContext:
        return SafePooledTransactionContext(TransactionWrapper(self), self._pool_init_lock)


client_class = SafeAsyncpgClient
