"""Encrypted database backups in the object store, and their restore.

A backup is one object, `backups/<UTC time>-<backend>.pvbak`:

    one line of JSON (the header: format, version, backend, payload, created_at,
    the wrapped data key), then "\\n", then the payload sealed by encrypt_stream
    under a fresh data key, with associated data = object key | "\\n" | header line.

The payload is `pg_dump --format=custom` output (PostgreSQL), or the database
image taken with SQLite's online backup API, zlib-compressed (SQLite). Neither
path ever writes plaintext to disk: pg_dump's stdout is sealed as it streams,
the SQLite image is taken into memory. Binding the header into the associated
data means that editing it (backend, time, key) fails authentication like any
other byte. See docs/backups.md.

Restore goes only into an empty database, and applies nothing until the whole
backup has authenticated: SQLite decrypts it into memory (deserialize needs it
there anyway); PostgreSQL spools the ciphertext to a private temporary file while
verifying it, then decrypts from that spool into `pg_restore --single-transaction`,
so memory stays bounded and a failure anywhere leaves the target as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import sqlite3
import tempfile
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import asyncpg

from storage.crypto import (
    IntegrityError,
    KeyRing,
    UnknownKeyError,
    WrappedKey,
    decrypt_stream,
    encrypt_stream,
    new_data_key,
    unwrap,
)
from storage.objects import ObjectMissing, ObjectStore

PREFIX = "backups/"
DEFAULT_KEEP = 14
FORMAT = "printvault-backup"
FORMAT_VERSION = 1
CHUNK_SIZE = 1024 * 1024
# The header is a few hundred bytes; the bound stops a damaged object from
# making us buffer without end while looking for its newline.
MAX_HEADER_SIZE = 4096
PAYLOADS = {"sqlite": "sqlite-image+zlib", "postgres": "pg_dump-custom"}

_STAMP = "%Y%m%dT%H%M%S.%fZ"
_NAME = re.compile(r"backups/(\d{8}T\d{6}\.\d{6}Z)-(sqlite|postgres)\.pvbak")
_PG_SCHEMES = ("postgres", "postgresql", "asyncpg", "psycopg")
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Any relation in a user schema makes a database "not empty" for restore.
_PG_RELATIONS = """
    SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
"""
# Arbitrary but fixed: the advisory lock id that serialises backups of one database.
_PG_LOCK_ID = 0x70766261  # "pvba"


class BackupError(Exception):
    """A backup or restore could not be done; the message says why."""


class TargetNotEmpty(BackupError):
    """Restore refuses a database that already holds tables."""


class BackupDamaged(BackupError):
    """The backup failed authentication: altered, truncated, or not a backup."""


class BackupInfo(NamedTuple):
    key: str
    created_at: datetime  # UTC, from the object's name
    backend: str  # "sqlite" or "postgres"
    size: int  # bytes stored


# --- where the database is ---------------------------------------------------


@dataclass(frozen=True)
class SqliteDatabase:
    path: Path
    backend = "sqlite"


@dataclass(frozen=True)
class PostgresDatabase:
    dbname: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    sslmode: str | None = None
    backend = "postgres"

    def libpq_env(self) -> dict[str, str]:
        """The environment for pg_dump/pg_restore. The password goes here, not on
        the command line, where any local user could read it from `ps`."""
        settings = {
            "PGHOST": self.host,
            "PGPORT": str(self.port) if self.port else None,
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGSSLMODE": self.sslmode,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({k: v for k, v in settings.items() if v})
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        return env

    def conninfo(self) -> str:
        # Passed as `dbname='...'` so a name is never mistaken for a connection string.
        escaped = self.dbname.replace("\\", "\\\\").replace("'", "\\'")
        return f"dbname='{escaped}'"

    async def connect(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                database=self.dbname,
                ssl=self.sslmode,
                timeout=10,
            )
        except (OSError, asyncpg.PostgresError) as error:
            raise BackupError(f"cannot connect to database {self.dbname!r}: {error}") from error


Database = SqliteDatabase | PostgresDatabase


def parse_database_url(url: str) -> Database:
    """DATABASE_URL as tortoise reads it; its query options (pool sizes) are ignored."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = url.removeprefix("sqlite://").split("?", 1)[0]
        if path in ("", ":memory:"):
            raise BackupError("an in-memory SQLite database cannot be backed up or restored")
        return SqliteDatabase(Path(path))
    if parts.scheme in _PG_SCHEMES:
        return _postgres(parts)
    raise BackupError(f"cannot back up a {parts.scheme!r} database")


def _postgres(parts: SplitResult) -> PostgresDatabase:
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise BackupError("DATABASE_URL names no database")
    query = parse_qs(parts.query)
    sslmode = (query.get("sslmode") or query.get("ssl") or [""])[0] or None
    return PostgresDatabase(
        dbname=dbname,
        # A Unix socket directory comes as ?host=/run/postgresql, as libpq spells it.
        host=parts.hostname or (query.get("host") or [""])[0] or None,
        port=parts.port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        sslmode=sslmode if sslmode in _SSL_MODES else None,
    )


# --- the header ----------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    backend: str
    created_at: datetime
    wrapped_key: str

    def encode(self) -> bytes:
        return json.dumps(
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "backend": self.backend,
                "payload": PAYLOADS[self.backend],
                "created_at": self.created_at.isoformat(),
                "wrapped_key": self.wrapped_key,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, line: bytes) -> Header:
        try:
            fields = json.loads(line)
            if fields["format"] != FORMAT or fields["version"] != FORMAT_VERSION:
                raise ValueError("unknown format or version")
            if fields["payload"] != PAYLOADS[fields["backend"]]:
                raise ValueError("unknown payload")
            if not isinstance(fields["wrapped_key"], str):
                raise ValueError("wrapped_key is not a string")
            created_at = datetime.fromisoformat(fields["created_at"])
            return cls(fields["backend"], created_at, fields["wrapped_key"])
        except (ValueError, KeyError, TypeError) as error:
            raise BackupDamaged(f"not a printvault backup (v{FORMAT_VERSION}): {error}") from None


def _associated(key: str, header_line: bytes) -> bytes:
    return key.encode() + b"\n" + header_line


# --- public API ----------------------------------------------------------------


async def make_backup(
    database_url: str, store: ObjectStore, ring: KeyRing, keep: int = DEFAULT_KEEP
) -> str:
    """Dump, encrypt and store the database; keep the newest `keep` backups.

    Returns the new object's key. If the dump fails, no object is left behind
    (the store publishes an object only once its stream ended without error).
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    database = parse_database_url(database_url)
    created_at = datetime.now(UTC)
    key = f"{PREFIX}{created_at.strftime(_STAMP)}-{database.backend}.pvbak"
    data_key, wrapped = new_data_key(ring)
    line = Header(database.backend, created_at, wrapped.to_str()).encode()
    sealed = encrypt_stream(_dump(database), data_key, _associated(key, line))
    await store.put(key, _prepend(line + b"\n", sealed))
    await prune_backups(store, keep)
    return key


async def restore_backup(database_url: str, store: ObjectStore, ring: KeyRing, key: str) -> None:
    """Restore backup `key` into an empty database (created if a missing SQLite file).

    Raises TargetNotEmpty if the target holds any table, BackupDamaged if the
    backup does not authenticate, BackupError for anything else; in every case
    the target is left as it was.
    """
    database = parse_database_url(database_url)
    header, line, sealed = await _open(store, key)
    async with _closing(sealed):
        if header.backend != database.backend:
            raise BackupError(
                f"{key} is a {header.backend} backup; it cannot be restored into "
                f"a {database.backend} database"
            )
        await _ensure_empty(database)
        data_key = _unwrap(ring, header.wrapped_key)
        associated = _associated(key, line)
        if isinstance(database, SqliteDatabase):
            await _restore_sqlite(database, sealed, data_key, associated)
        else:
            await _restore_postgres(database, sealed, data_key, associated)


async def list_backups(store: ObjectStore) -> list[BackupInfo]:
    """Our backups in the store, newest first; other objects under backups/ are ignored."""
    found = []
    async for item in store.list(PREFIX):
        match = _NAME.fullmatch(item.key)
        if match:
            created_at = datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC)
            found.append(BackupInfo(item.key, created_at, match[2], item.size))
    # Names start with a fixed-width UTC time, so name order is time order.
    return sorted(found, key=lambda info: info.key, reverse=True)


async def prune_backups(store: ObjectStore, keep: int) -> list[str]:
    """Delete all but the newest `keep` backups; returns the deleted keys.

    Safe when several processes prune at once: each keeps the newest `keep` it
    sees, so a backup newer than what another process listed is never touched,
    and deleting an already deleted object is not an error.
    """
    doomed = [info.key for info in (await list_backups(store))[keep:]]
    for key in doomed:
        await store.delete(key)
    return doomed


@contextlib.asynccontextmanager
async def backup_lock(database_url: str) -> AsyncIterator[bool]:
    """Try to claim the right to back up this database; yields whether we hold it.

    PostgreSQL: a session advisory lock, seen by every process on every machine
    that uses the database. SQLite: a lock file beside the database file, seen by
    every process on the machine (the only ones that can share that file).
    """
    database = parse_database_url(database_url)
    if isinstance(database, PostgresDatabase):
        async with _pg_advisory_lock(database) as held:
            yield held
    else:
        with _file_lock(database.path.with_name(database.path.name + ".backup-lock")) as held:
            yield held


# --- dump ----------------------------------------------------------------------


def _dump(database: Database) -> AsyncIterator[bytes]:
    if isinstance(database, SqliteDatabase):
        return _sqlite_dump(database.path)
    return _pg_dump(database)


async def _sqlite_dump(path: Path) -> AsyncIterator[bytes]:
    try:
        image = await asyncio.to_thread(_sqlite_image, path)
    except sqlite3.Error as error:
        raise BackupError(f"cannot read SQLite database {path}: {error}") from error
    for start in range(0, len(image), CHUNK_SIZE):
        yield image[start : start + CHUNK_SIZE]


def _sqlite_image(path: Path) -> bytes:
    """The database, compressed, read through the online backup API.

    The backup API copies a consistent snapshot while the server keeps writing;
    copying into an in-memory database keeps the plaintext off the disk.
    """
    if not path.is_file():
        raise BackupError(f"SQLite database {path} does not exist")
    with _sqlite(path, read_only=True) as source, _sqlite(None) as memory:
        source.backup(memory)
        return zlib.compress(memory.serialize(), 6)


async def _pg_dump(database: PostgresDatabase) -> AsyncIterator[bytes]:
    # Custom format is compressed and is what pg_restore can apply in one transaction.
    args = ["--format=custom", "--no-password", f"--dbname={database.conninfo()}"]
    async with _Tool("pg_dump", args, database, stdin=False) as tool:
        assert tool.process.stdout is not None
        while chunk := await tool.process.stdout.read(CHUNK_SIZE):
            yield chunk
        await tool.finish()


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async with _closing(rest):
        yield first
        async for chunk in rest:
            yield chunk


# --- restore -------------------------------------------------------------------


async def _open(store: ObjectStore, key: str) -> tuple[Header, bytes, AsyncIterator[bytes]]:
    """The backup's header, its exact line, and the rest of the object (sealed payload)."""
    chunks = store.get(key)
    try:
        head = bytearray()
        while b"\n" not in head and len(head) <= MAX_HEADER_SIZE:
            chunk = await anext(chunks, None)
            if chunk is None:
                break
            head += chunk
        line, newline, rest = bytes(head).partition(b"\n")
        if not newline or len(line) > MAX_HEADER_SIZE:
            raise BackupDamaged(f"{key} has no backup header")
        return Header.decode(line), line, _prepend(rest, chunks)
    except ObjectMissing:
        raise BackupError(f"no backup {key!r} in the object store") from None
    except BaseException:
        await _aclose(chunks)
        raise


def _unwrap(ring: KeyRing, wrapped_key: str) -> bytes:
    try:
        return unwrap(ring, WrappedKey.from_str(wrapped_key))
    except UnknownKeyError as error:
        raise BackupError(f"cannot open the backup: {error}") from None
    except (IntegrityError, ValueError) as error:
        raise BackupDamaged(f"the backup's data key does not open: {error}") from None


async def _ensure_empty(database: Database) -> None:
    if isinstance(database, SqliteDatabase):
        try:
            count = await asyncio.to_thread(_sqlite_table_count, database.path)
        except sqlite3.Error as error:
            raise BackupError(f"cannot read the target {database.path}: {error}") from error
    else:
        connection = await database.connect()
        try:
            count = await connection.fetchval(_PG_RELATIONS)
        finally:
            await connection.close()
    if count:
        raise TargetNotEmpty(
            f"the target database is not empty ({count} tables, indexes or other objects); "
            "restore only into an empty database (create a new one, or move the old one aside)"
        )


def _sqlite_table_count(path: Path) -> int:
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with _sqlite(path, read_only=True) as connection:
        query = "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        return connection.execute(query).fetchone()[0]


async def _restore_sqlite(
    database: SqliteDatabase, sealed: AsyncIterator[bytes], data_key: bytes, associated: bytes
) -> None:
    compressed = b"".join([part async for part in _decrypt(sealed, data_key, associated)])
    try:
        await asyncio.to_thread(_write_sqlite, database.path, compressed)
    except (sqlite3.Error, OSError) as error:
        raise BackupError(f"cannot restore into {database.path}: {error}") from error


def _write_sqlite(path: Path, compressed: bytes) -> None:
    try:
        image = bytearray(zlib.decompress(compressed))
    except zlib.error as error:
        raise BackupDamaged(f"the SQLite image does not decompress: {error}") from None
    if len(image) > 19:
        # A WAL database's header says so, and an in-memory database cannot open
        # such an image; mark it rollback-journal (the server turns WAL on again).
        image[18:20] = b"\x01\x01"
    with _sqlite(None) as memory:
        memory.deserialize(bytes(image))
        if memory.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupDamaged("the SQLite image fails its integrity check")
        _create_private(path)
        with _sqlite(path) as target:
            memory.backup(target)


def _create_private(path: Path) -> None:
    """Create the target file 0600 (directory 0700) before SQLite creates it 0644."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


async def _restore_postgres(
    database: PostgresDatabase, sealed: AsyncIterator[bytes], data_key: bytes, associated: bytes
) -> None:
    with tempfile.TemporaryFile(prefix="pvbak-") as spool:  # unlinked at once, mode 0600
        # Pass 1: the whole backup must authenticate before anything is applied;
        # the spool (ciphertext only) keeps pass 2 from re-reading a store that
        # could have changed meanwhile.
        async for _ in _decrypt(_tee(sealed, spool), data_key, associated):
            pass
        # Pass 2: --single-transaction, and a kill on any error before the end,
        # so the target gets all of it or nothing.
        args = [
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            f"--dbname={database.conninfo()}",
        ]
        async with _Tool("pg_restore", args, database, stdin=True) as tool:
            await tool.feed(_decrypt(_replay(spool), data_key, associated))
            await tool.finish()


async def _decrypt(
    sealed: AsyncIterable[bytes], data_key: bytes, associated: bytes
) -> AsyncIterator[bytes]:
    try:
        async for part in decrypt_stream(sealed, data_key, associated):
            yield part
    except IntegrityError:
        raise BackupDamaged(
            "the backup failed authentication (altered, truncated or renamed); nothing was restored"
        ) from None


async def _tee(chunks: AsyncIterator[bytes], spool: IO[bytes]) -> AsyncIterator[bytes]:
    async with _closing(chunks):
        async for chunk in chunks:
            await asyncio.to_thread(spool.write, chunk)
            yield chunk


async def _replay(spool: IO[bytes]) -> AsyncIterator[bytes]:
    await asyncio.to_thread(spool.seek, 0)
    while chunk := await asyncio.to_thread(spool.read, CHUNK_SIZE):
        yield chunk


# --- helpers -------------------------------------------------------------------


class _Tool:
    """A PostgreSQL client tool as a subprocess, killed if we leave it early.

    Killing pg_restore before it commits drops its connection, and the server
    rolls its single transaction back.
    """

    def __init__(self, name: str, args: list[str], database: PostgresDatabase, *, stdin: bool):
        self.name, self.args, self.database, self.stdin = name, args, database, stdin
        self.process: asyncio.subprocess.Process
        self._stderr: asyncio.Task[bytes]

    async def __aenter__(self) -> _Tool:
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        try:
            self.process = await asyncio.create_subprocess_exec(
                self.name,
                *self.args,
                stdin=pipe if self.stdin else devnull,
                stdout=devnull if self.stdin else pipe,
                stderr=pipe,
                env=self.database.libpq_env(),
            )
        except FileNotFoundError:
            raise BackupError(
                f"{self.name} not found: install the PostgreSQL client tools "
                "(Debian: postgresql-client), of the server's major version or newer"
            ) from None
        assert self.process.stderr is not None
        # Read stderr all along: a full stderr pipe would stall the tool.
        self._stderr = asyncio.create_task(self.process.stderr.read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        with contextlib.suppress(Exception):
            await self._stderr

    async def feed(self, chunks: AsyncIterator[bytes]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        async with _closing(chunks):
            try:
                async for chunk in chunks:
                    stdin.write(chunk)
                    await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the tool stopped reading; finish() reports why
        stdin.close()

    async def finish(self) -> None:
        code = await self.process.wait()
        if code != 0:
            message = (await self._stderr).decode(errors="replace").strip()
            raise BackupError(f"{self.name} failed (exit {code}): {message}")


@contextlib.asynccontextmanager
async def _closing(chunks: AsyncIterator[bytes]) -> AsyncIterator[None]:
    """Close a stream we stop reading early, so its file or socket goes now, not at GC."""
    try:
        yield
    finally:
        await _aclose(chunks)


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


@contextlib.contextmanager
def _sqlite(path: Path | None, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection, closed on exit (sqlite3's own `with` only commits)."""
    if path is None:
        connection = sqlite3.connect(":memory:")
    elif read_only:
        # mode=ro: never create a missing file, never write.
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    else:
        connection = sqlite3.connect(path)
    try:
        yield connection
    finally:
        connection.close()


@contextlib.asynccontextmanager
async def _pg_advisory_lock(database: PostgresDatabase) -> AsyncIterator[bool]:
    connection = await database.connect()
    try:
        # A session lock: it goes with the connection if this process dies.
        yield await connection.fetchval("SELECT pg_try_advisory_lock($1)", _PG_LOCK_ID)
    finally:
        await connection.close()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            # flock locks belong to the open file: the kernel drops them when the
            # process dies, and two opens in one process exclude each other too.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
