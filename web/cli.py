"""The command line of `server.py`: serve (default), migrate, create-staff EMAIL,
worker, rotate-keys, backup, restore BACKUP."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import os
import sys

import uvicorn

from domain import key_rotation
from domain.errors import DomainError
from runtime import backups, logs, metrics
from runtime.data_dir import restrict_new_files, secure_data_dir
from runtime.jobs import run_worker
from runtime.services import key_ring, sealing_keys
from runtime.settings import Settings, SettingsError, load_settings
from storage import db
from storage.backup import BackupError
from web.app import create_app
from web.protocol import protocol_for
from web.tls import tls_context


def serve(settings: Settings) -> None:
    tls = bool(settings.tls_certfile and settings.tls_keyfile)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # The access log would print request paths; it is off so no token in a URL is logged.
        access_log=False,
        # Logging is ours (runtime/logs.py: JSON with request ids); uvicorn's own
        # configuration would add handlers of another shape.
        log_config=None,
        proxy_headers=False,
        http=protocol_for(settings),  # h11 with header and body read deadlines
        # Subscriptions (graphql-transport-ws): the sans-I/O implementation pauses a
        # sender when the client stops reading, so a stalled socket holds no growing
        # buffer; client frames are small (a subscribe message), pings find dead peers.
        ws="websockets-sansio",
        ws_max_size=64 * 1024,
        # No permessage-deflate: messages are small, and a zlib compressor and
        # decompressor per connection cost ~40 KiB of every idle subscription (and
        # compressing secrets next to attacker-chosen text is how CRIME/BREACH work).
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        ssl_certfile=settings.tls_certfile if tls else None,
        ssl_keyfile=settings.tls_keyfile if tls else None,
        ssl_context_factory=tls_context if tls else None,
    )
    tune_garbage_collector()
    uvicorn.Server(config).run()


# Allocations between two young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Fewer, cheaper cyclic collections while serving (bench/README.md, issue 14).

    A page of 20 models allocates tens of thousands of short-lived objects, nearly
    all freed by reference counting; at the default threshold they still trigger a
    collection every 700 allocations, and the older generations' collections walk
    every object the imports made. Frozen, those leave the collected generations;
    measured: the page's p99 385 / 309 -> 211 / 225 ms at 16 connections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


async def migrate(settings: Settings) -> None:
    await db.migrate(settings.database_url, sealing_keys(settings))
    await db.disconnect()  # the migration engine leaves its connection open
    print("database is up to date")


async def create_staff(settings: Settings, email: str, first: str, last: str) -> None:
    from domain.accounts import create_staff as create

    password = _read_password()
    await db.connect(settings.database_url, sealing_keys(settings))
    try:
        _, uri = await create(settings, email, password, first, last)
    finally:
        await db.disconnect()
    print("Staff account created. Scan this in an authenticator app; it is shown once:")
    print(uri)


async def rotate_keys(settings: Settings) -> None:
    ring = key_ring(settings)
    await db.connect(settings.database_url, sealing_keys(settings))
    try:
        changed = await key_rotation.rotate_keys(ring)
        in_use = await key_rotation.keys_in_use()
    finally:
        await db.disconnect()
    print(f"re-wrapped {changed} data keys under {ring.active_key_id}")
    print("data keys per master key:", ", ".join(f"{k}={n}" for k, n in in_use.items()) or "none")


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\n")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="server.py", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (default)")
    commands.add_parser("migrate", help="apply database migrations")
    staff = commands.add_parser("create-staff", help="create a staff account (password on stdin)")
    staff.add_argument("email")
    staff.add_argument("--first-name", default="Staff")
    staff.add_argument("--last-name", default="Member")
    commands.add_parser("worker", help="run analysis jobs from JOB_BROKER_URL (production)")
    commands.add_parser("rotate-keys", help="re-wrap data keys under the first MASTER_KEYS key")
    commands.add_parser("backup", help="back up the database, encrypted, into the object store")
    restore = commands.add_parser("restore", help="restore a backup into an EMPTY database")
    restore.add_argument("backup", help="object key, e.g. backups/20260101T030000Z-sqlite.pvbak")
    return parser


def run(args: argparse.Namespace, settings: Settings) -> None:
    if args.command in (None, "serve"):
        serve(settings)
    elif args.command == "migrate":
        asyncio.run(migrate(settings))
    elif args.command == "backup":
        print(asyncio.run(backups.run_backup(settings)))
    elif args.command == "restore":
        asyncio.run(backups.run_restore(settings, args.backup))
        print(f"restored {args.backup}; now run `server.py migrate`, then start the servers")
    elif args.command == "rotate-keys":
        asyncio.run(rotate_keys(settings))
    elif args.command == "worker":
        asyncio.run(run_worker(settings))
    elif args.command == "create-staff":
        asyncio.run(create_staff(settings, args.email, args.first_name, args.last_name))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure(os.environ.get("LOG_FORMAT") or "json")  # before settings: their errors too
    restrict_new_files()  # before the first file: generated keys, the database, objects
    try:
        settings = load_settings()
        secure_data_dir(settings.data_dir)
        logs.configure(settings.log_format)
        run(args, settings)
    except (SettingsError, DomainError, BackupError, db.MigrationFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        metrics.process_exited()
    return 0
