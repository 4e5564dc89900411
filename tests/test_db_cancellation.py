"""A task cancelled while it opens a transaction must not wedge the database.

Found as a hang of the whole suite (a test app's shutdown cancels its in-process
jobs; one was entering `in_transaction()`): tortoise's SQLite context takes the
connection's lock, then awaits BEGIN; cancelled there, it never released the lock,
and every later query of the process waited forever. Its PostgreSQL context
leaked the pooled connection the same way. A request cancelled by its deadline
hits the same window, so this is a production hang, not a test artefact.
"""

from __future__ import annotations

import asyncio

from tortoise import connections
from tortoise.transactions import in_transaction

from storage.models import Company
from tests.conftest import BACKEND

ROUNDS = 40


async def _write_in_transaction(name: str) -> None:
    async with in_transaction():
        await Company.create(name=name, kind="CUSTOMER")


async def _cancel_after(delay_s: float, name: str) -> None:
    task = asyncio.create_task(_write_in_transaction(name))
    if delay_s:
        await asyncio.sleep(delay_s)
    else:
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if BACKEND == "sqlite":
        # Once the cancelled task has ended, so has its transaction: a COMMIT or
        # ROLLBACK whose await was cancelled still runs on aiosqlite's thread, and
        # was once still pending here (a test's teardown saw "a transaction was left
        # open" after its app had stopped).
        raw = connections.get("default")._connection  # type: ignore[attr-defined]
        assert raw is None or not raw.in_transaction, f"{name}: transaction still open"


async def test_cancelling_a_transaction_at_any_point_leaves_the_database_usable(
    database: str,
) -> None:
    # Every point of entry, body and exit is hit by some round: cancellation
    # after 0..ROUNDS steps of the event loop, and after growing short sleeps.
    for round_ in range(ROUNDS):
        await _cancel_after(0, f"tick-{round_}")
        for _ in range(round_ % 7):
            await asyncio.sleep(0)
        await _cancel_after(round_ * 0.0002, f"sleep-{round_}")
        # Within a deadline: before the fix this waited forever on the lock / the pool.
        await asyncio.wait_for(Company.filter(name="absent").count(), timeout=10)
    # Nothing is left half-open: a new transaction starts and commits.
    await asyncio.wait_for(_write_in_transaction("after"), timeout=10)
    assert await Company.filter(name="after").count() == 1
    if BACKEND == "sqlite":
        raw = connections.get("default")._connection  # type: ignore[attr-defined]
        assert not raw.in_transaction
