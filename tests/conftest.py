"""Test set-up: one database backend per pytest run, chosen by TEST_DATABASE.

`make test` runs the suite on SQLite, then the database tests again on
PostgreSQL (a fresh database per run, dropped afterwards). When PostgreSQL is
unreachable its tests are skipped with a loud reason, unless REQUIRE_POSTGRES=1
(set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest
from tortoise import Tortoise, connections

from runtime.jobs import JobOptions
from runtime.services import close_services, open_services, sealing_keys
from runtime.settings import Settings
from storage import db
from storage.crypto import KeyRing
from storage.objects import LocalObjectStore
from storage.sealed_fields import install_keys, installed_keys
from tests.helpers import Api
from web.app import create_app

BACKEND = os.environ.get("TEST_DATABASE", "sqlite")
POSTGRES_ADMIN_DSN = os.environ.get(
    "TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pytest_report_header(config: pytest.Config) -> str:
    return f"database backend: {BACKEND}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "db: the test needs the database (runs on every backend)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "database" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
async def database_url(data_dir: Path) -> AsyncIterator[str]:
    if BACKEND == "sqlite":
        yield f"sqlite://{data_dir / 'test.sqlite3'}"
        return
    name = f"pv_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        message = f"PostgreSQL backend SKIPPED: cannot connect to {POSTGRES_ADMIN_DSN}: {error}"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(message)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        await Tortoise.close_connections()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    return Settings(
        app_env="test",
        data_dir=data_dir,
        database_url="",  # the database fixture connects; the app does not
        storage_url=f"file://{data_dir / 'objects'}",
        master_keys={"test-k1": secrets.token_bytes(32)},
        secret_key=base64.b64decode(base64.b64encode(secrets.token_bytes(32))),
        # Periodic backups are tested on their own (tests/test_backup.py), not in every app.
        backup_period_seconds=0,
        # Previews are made by their own tests (test_preview_*.py, which turn them on):
        # every other upload would start a preview child for nothing.
        previews=False,
    )


@pytest.fixture(scope="session")
async def _connected(database_url: str, settings: Settings) -> AsyncIterator[str]:
    await db.connect(database_url, sealing_keys(settings))
    yield database_url
    await db.disconnect()


TABLES = [
    "webhook_delivery",
    "webhook",
    "notice_opt_out",
    "provider_material",
    "material",
    "maintenance_run",
    "audit_event",
    "order_event",
    "print_order",
    "quote",
    "comment",
    "model_preview",
    "model_metadata",
    "model3d",
    "account_token",
    "recovery_code",
    "session",
    "api_token",
    "invitation",
    "app_user",
    "company",
]


@pytest.fixture
async def database(_connected: str, settings: Settings) -> AsyncIterator[str]:
    """A connected, empty database; emptied again after the test."""
    install_keys(sealing_keys(settings))  # a test before may have installed others
    yield _connected
    connection = connections.get("default")
    if BACKEND == "sqlite":
        # The one shared connection must be outside any transaction once the test's
        # apps are closed: one left open hides every later write from other processes.
        assert not connection._connection.in_transaction, "a transaction was left open"
        # SQLite keeps the -wal while any connection is open: gone means another process
        # believed itself the last one, because something in this process opened and
        # closed these files outside SQLite and so dropped its POSIX locks. This
        # process's later writes then land in an unlinked file no server process sees.
        wal = Path(f"{connection.filename}-wal")
        assert await asyncio.to_thread(wal.exists), "the -wal went from under us"
        for table in TABLES:
            await connection.execute_script(f"DELETE FROM {table}")
    else:
        await connection.execute_script(f"TRUNCATE {', '.join(TABLES)} CASCADE")


@asynccontextmanager
async def serving(settings: Settings, job_options: JobOptions | None = None) -> AsyncIterator[Api]:
    """The app with its services (httpx does not run the lifespan; this does its part)."""
    app = create_app(settings)
    previous_keys = installed_keys()
    install_keys(sealing_keys(settings))  # as db.connect in the lifespan does
    app.state.services = await open_services(settings, job_options=job_options)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(client, settings, app.state.services)
    finally:
        await close_services(app.state.services)
        install_keys(previous_keys)


@pytest.fixture
async def api(database: str, settings: Settings, tmp_path: Path) -> AsyncIterator[Api]:
    # A fresh object store per test, as the database is emptied per test.
    async with serving(replace(settings, storage_url=f"file://{tmp_path / 'objects'}")) as api:
        yield api


class QueryCounter(logging.Handler):
    """Counts SQL statements as tortoise logs them, made by the task that called
    reset() (background jobs of the in-process engine run queries too)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.task: asyncio.Task | None = None

    def reset(self) -> None:
        self.count = 0
        self.task = asyncio.current_task()

    def emit(self, record: logging.LogRecord) -> None:
        if self.task is None or asyncio.current_task() is self.task:
            self.count += 1


@pytest.fixture
def count_queries():
    logger = logging.getLogger("tortoise.db_client")
    counter = QueryCounter()
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(counter)
    yield counter
    logger.removeHandler(counter)
    logger.setLevel(previous)


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
async def customer(api: Api):
    return await api.customer()


@pytest.fixture
async def staff(api: Api):
    return await api.staff()


def _dump_asyncio_tasks(signum: int, frame: object) -> None:
    """`kill -USR1 <pytest pid>` prints every asyncio task's stack: a thread dump
    (py-spy, pytest-timeout) only shows an idle event loop when a task waits
    forever on a lock or a future, which is what a hang of this suite looks like."""
    try:
        tasks = asyncio.all_tasks(asyncio.get_running_loop())
    except RuntimeError:
        tasks = set()
    print(f"=== {len(tasks)} asyncio task(s) ===", file=sys.stderr)
    for task in tasks:
        print("---", task, file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


signal.signal(signal.SIGUSR1, _dump_asyncio_tasks)


# --- the analysis job's parts (tests/test_jobs.py and the tests built on it) -------------


@pytest.fixture
def job_settings(settings: Settings) -> Settings:
    return replace(settings, analysis_timeout_seconds=30, job_broker_url="")


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


@pytest.fixture
def keyring(settings: Settings) -> KeyRing:
    return KeyRing(settings.master_keys, settings.active_key_id)
