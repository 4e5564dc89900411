"""Tortoise's database clients, made safe to cancel while a transaction opens.

Tortoise (1.1.9) enters a transaction in two steps, "take the connection" and
"BEGIN", with no clean-up between them: a task cancelled during BEGIN (a request
past its deadline, a job stopped at shutdown) never gave the connection back.
On SQLite that is the process's one connection lock, so every later query waited
forever; on PostgreSQL a pooled connection leaked per cancellation until the pool
ran dry. These engines subclass tortoise's and only change how a transaction is
entered; `storage.db` names them in the connection settings.
See tests/test_db_cancellation.py.
"""

from __future__ import annotations

ENGINES = {
    "tortoise.backends.sqlite": "storage.backends.sqlite",
    "tortoise.backends.asyncpg": "storage.backends.asyncpg",
}
