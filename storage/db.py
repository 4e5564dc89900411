"""Database connection and schema migrations (tortoise's own migration engine).

Migrations are versioned files in storage/migrations, written as tortoise
operations rather than SQL, so the same files run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.exceptions import BaseORMException
from tortoise.migrations.api import migrate as run_migrations

from storage.backends import ENGINES
from storage.sealed_fields import SealingKeys, install_keys

APP_LABEL = "models"


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": _connection(database_url)},
        "apps": {
            APP_LABEL: {
                "models": ["storage.models"],
                "migrations": "storage.migrations",
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _connection(url: str) -> dict[str, Any]:
    """Tortoise's reading of the URL, on our cancellation-safe engines (storage/backends)."""
    expanded = expand_db_url(_normalise_url(url))
    expanded["engine"] = ENGINES.get(expanded["engine"], expanded["engine"])
    return expanded


def _normalise_url(url: str) -> str:
    # Accept the common `postgresql://` spelling as well as tortoise's `postgres://`.
    if url.startswith("postgresql://"):
        return "postgres://" + url.removeprefix("postgresql://")
    return url


def _make_sqlite_dir(url: str) -> None:
    """SQLite creates its file but not the folder; done when connecting, never at import."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if path not in ("", ":memory:"):
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)


class MigrationFailed(Exception):
    """A migration step was refused by the database; the message says which and why."""


async def migrate(database_url: str, keys: SealingKeys) -> None:
    """Apply every pending migration; idempotent, safe at every start-up.

    The keys seal personal data, also in data migrations (0005)."""
    install_keys(keys)
    _make_sqlite_dir(database_url)
    try:
        await run_migrations(config=tortoise_config(database_url))
    except BaseException as error:
        # The migration engine leaves its connection open. On SQLite that is a
        # non-daemon thread: after a failed step the process (`migrate`, or a server
        # whose start-up failed) printed its error and then never exited.
        await Tortoise.close_connections()
        if isinstance(error, BaseORMException):
            raise MigrationFailed(f"migration failed: {error}") from error
        raise


async def connect(database_url: str, keys: SealingKeys, *, apply_migrations: bool = True) -> None:
    install_keys(keys)
    if apply_migrations:
        await migrate(database_url, keys)
    _make_sqlite_dir(database_url)
    # Global fallback: uvicorn runs the lifespan in its own task, and requests in
    # others; without it they would not see the connections opened here.
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def disconnect() -> None:
    await Tortoise.close_connections()


# For the `tortoise` CLI (makemigrations): `tortoise -c storage.db.TORTOISE_ORM makemigrations`.
TORTOISE_ORM = tortoise_config(os.environ.get("DATABASE_URL", "sqlite://data/dev.sqlite3"))
