"""Webhook deliveries on real worker processes (Redis broker): a worker killed mid-try.

The first worker is killed (SIGKILL) while its try hangs at the receiver; the try's lease
runs out and a second worker sends it again, with the same `webhook-id`, and records it.
Skipped when Redis is unreachable, unless REQUIRE_REDIS=1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tortoise.timezone import now as utc_now

from domain import webhook_endpoints, webhooks
from domain.enums import CompanyKind
from runtime.jobs import JobOptions, JobQueue
from runtime.settings import Settings
from storage.crypto import KeyRing
from storage.models import Company, Webhook, WebhookDelivery
from storage.objects import LocalObjectStore
from tests.http_receiver import Received, Receiver, response
from tests.test_worker_process import ROOT, queue_name, redis_url  # noqa: F401 (fixtures)

WORKER = """
import asyncio, base64, json, logging, os
from pathlib import Path

from runtime.jobs import JobOptions, run_worker
from runtime.settings import Settings
from runtime.webhook_delivery import Timeouts

config = json.loads(os.environ["PV_TEST_WORKER"])
settings = Settings(
    app_env="test",
    data_dir=Path(config["data_dir"]),
    database_url=config["database_url"],
    storage_url="file://" + config["store_root"],
    master_keys={kid: base64.b64decode(key) for kid, key in config["master_keys"].items()},
    secret_key=base64.b64decode(config["secret_key"]),
    job_broker_url=config["broker_url"],
    webhook_allow_private_networks=True,
)
options = JobOptions(
    queue_name=config["queue"],
    concurrency=2,
    sweep_interval_s=0.5,
    webhook_timeouts=Timeouts(connect=1.0, read=4.0, total=4.0),
    webhook_lease_margin_s=1.0,
)
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
asyncio.run(run_worker(settings, options=options))
"""


def _start_worker(settings: Settings, database_url: str, queue: str, log: Path) -> subprocess.Popen:
    config = {
        "data_dir": str(settings.data_dir),
        "database_url": database_url,
        "store_root": settings.storage_url.removeprefix("file://"),
        "master_keys": {k: base64.b64encode(v).decode() for k, v in settings.master_keys.items()},
        "secret_key": base64.b64encode(settings.secret_key).decode(),
        "broker_url": settings.job_broker_url,
        "queue": queue,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER], cwd=ROOT,
            env={**os.environ, "PV_TEST_WORKER": json.dumps(config)},
            stdout=out, stderr=subprocess.STDOUT,
        )


async def _until(predicate, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_a_worker_killed_mid_delivery_is_replaced_and_the_try_repeated(
    database: str, settings: Settings, redis_url: str, queue_name: str, tmp_path: Path  # noqa: F811
) -> None:
    worker_settings = Settings(
        app_env="test", data_dir=settings.data_dir, database_url=database,
        storage_url=f"file://{tmp_path / 'objects'}", master_keys=settings.master_keys,
        secret_key=settings.secret_key, job_broker_url=redis_url,
    )
    first_arrived = asyncio.Event()
    calls = 0

    async def hang_then_answer(received: Received, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_arrived.set()
            await asyncio.sleep(60)  # the worker dies while waiting for this answer
        writer.write(response(200))
        await writer.drain()

    company = await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
    secret = webhooks.new_secret()
    started: list[subprocess.Popen] = []
    store = LocalObjectStore(tmp_path / "objects")
    producer = JobQueue(
        worker_settings, store, KeyRing(settings.master_keys, settings.active_key_id),
        JobOptions(queue_name=queue_name),
    )
    async with Receiver(hang_then_answer) as receiver:
        await Webhook.create(
            company_id=company.id, url=receiver.url(), events=["order.assigned"],
            secret_sealed=webhook_endpoints.seal_secret(settings.secret_key, secret),
        )
        ids = await webhook_endpoints.fan_out(
            "order.assigned", utc_now(), [company.id],
            orderId="0b6e4b1e-5f39-4c8e-9d6f-0a1c2b3d4e5f", providerId=str(company.id),
            status="ASSIGNED",
        )
        await producer.start()
        try:
            await producer.enqueue_deliveries(ids)
            started.append(_start_worker(worker_settings, database, queue_name,
                                         tmp_path / "worker-1.log"))
            await asyncio.wait_for(first_arrived.wait(), 60)
            started[0].kill()
            started[0].wait(timeout=10)
            row = await WebhookDelivery.get(id=ids[0])
            assert row.status == "PENDING" and row.lease_until is not None
            started.append(_start_worker(worker_settings, database, queue_name,
                                         tmp_path / "worker-2.log"))
            await _until(lambda: _delivered(ids[0]), within=60)
        finally:
            for process in started:
                if process.poll() is None:
                    process.terminate()
                    process.wait(timeout=30)
            await producer.stop()
            await store.close()
    assert len(receiver.received) == 2
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    webhooks.verify(secret, second.headers, second.body, now=int(time.time()))
    rows = await WebhookDelivery.all()
    assert [(r.attempt, r.status, r.response_code) for r in rows] == [(1, "DELIVERED", 200)]


async def _delivered(delivery_id: int) -> bool:
    return (await WebhookDelivery.get(id=delivery_id)).status == "DELIVERED"
