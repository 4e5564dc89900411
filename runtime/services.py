"""The composition root: the long-lived parts of a process, opened once at start-up.

The lifespan of the ASGI app opens them after the database and closes them
before it; resolvers reach them through the request context.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain import catalogue
from domain.secrets_box import derive_key
from runtime.events import EventBus, make_event_bus
from runtime.jobs import JobOptions, JobQueue
from runtime.mailer import Mailer, make_mailer
from runtime.rate_limits import RateLimiter
from runtime.settings import Settings
from storage.crypto import KeyRing
from storage.objects import ObjectStore, open_object_store
from storage.sealed_fields import SealingKeys


@dataclass
class Services:
    settings: Settings
    store: ObjectStore
    keyring: KeyRing
    jobs: JobQueue
    limiter: RateLimiter
    events: EventBus
    mailer: Mailer | None = None


def object_store(settings: Settings) -> ObjectStore:
    """The object store the settings name; the one place that wires it."""
    return open_object_store(
        settings.storage_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_sse=settings.s3_sse,
        s3_kms_key_id=settings.s3_kms_key_id,
    )


def mailer_for(settings: Settings) -> Mailer | None:
    """SMTP_URL's transport; None (mail off) in production without it."""
    return make_mailer(
        settings.smtp_url,
        settings.mail_from,
        settings.link_base,
        settings.is_production,
        hash_key=derive_key(settings.secret_key, b"mail-log"),
    )


def key_ring(settings: Settings) -> KeyRing:
    """The master keys of the settings; the first one wraps new data keys."""
    return KeyRing(settings.master_keys, settings.active_key_id)


def sealing_keys(settings: Settings) -> SealingKeys:
    """What the sealed personal-data columns need: the master keys and SECRET_KEY."""
    return SealingKeys(key_ring(settings), settings.secret_key)


async def open_services(settings: Settings, *, job_options: JobOptions | None = None) -> Services:
    """Build the object store, the key ring and the job queue, and start the queue.

    Call it once the database is connected: in the embedded default the queue
    starts running jobs (and the recovery sweep) right away.
    """
    # The materials catalogue is seeded on first start (an empty table only).
    await catalogue.ensure_seeded()
    store = object_store(settings)
    keyring = key_ring(settings)
    events = make_event_bus(settings.redis_url)
    mail = mailer_for(settings)
    jobs = JobQueue(settings, store, keyring, job_options, mail, bus=events)
    try:
        await jobs.start()
    except BaseException:
        await store.close()
        await events.close()
        raise
    limiter = RateLimiter(settings.redis_url, settings.rate_limit_prefix, settings.rate_limits)
    return Services(
        settings=settings, store=store, keyring=keyring, jobs=jobs, limiter=limiter,
        events=events, mailer=mail,
    )


async def close_services(services: Services) -> None:
    """Stop the job queue first: its jobs still use the store."""
    try:
        await services.jobs.stop()
    finally:
        await services.events.close()
        await services.store.close()
