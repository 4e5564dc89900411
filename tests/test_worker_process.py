"""Separate worker processes on the real Redis: jobs run there, and survive kill -9.

The worker is a real process (`python -c` calling `runtime.jobs.run_worker`)
sharing the test's database (the SQLite file, or the PostgreSQL test
database) and object store directory. Each test uses its own Redis stream.
Skipped when Redis is unreachable, unless REQUIRE_REDIS=1.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from tortoise.timezone import now as utc_now

from runtime.jobs import CONSUMER_GROUP, JobOptions, JobQueue
from runtime.settings import Settings
from storage.crypto import KeyRing
from storage.models import AnalysisStatus, Model3D, ModelMetadata, ModelPreview
from storage.objects import LocalObjectStore
from tests.helpers import REDIS_URL
from tests.test_jobs import cube_stl, store_model, wait_for_status

ROOT = Path(__file__).resolve().parents[1]
# Short enough for a quick test, long enough for a cube's analysis.
TIMEOUT_S, MARGIN_S = 6, 2
LEASE_S = TIMEOUT_S + MARGIN_S

# The worker process. A test double of the store can hold every read, so that
# the test can kill the worker in the middle of a job.
WORKER = """
import asyncio, base64, json, logging, os
from pathlib import Path

from domain.analysis_job import JobLimits
from runtime.jobs import JobOptions, run_worker
from runtime.settings import Settings
from storage.objects import LocalObjectStore

config = json.loads(os.environ["PV_TEST_WORKER"])


class SlowStore(LocalObjectStore):
    async def get(self, key):
        await asyncio.sleep(config["read_delay_s"])
        async for chunk in super().get(key):
            yield chunk


settings = Settings(
    app_env="test",
    data_dir=Path(config["data_dir"]),
    database_url=config["database_url"],
    storage_url="file://" + config["store_root"],
    master_keys={kid: base64.b64decode(key) for kid, key in config["master_keys"].items()},
    job_broker_url=config["broker_url"],
    analysis_timeout_seconds=config["timeout_s"],
)
store = (SlowStore if config["read_delay_s"] else LocalObjectStore)(Path(config["store_root"]))
options = JobOptions(
    queue_name=config["queue"],
    concurrency=2,
    limits=JobLimits(lease_margin_s=config["margin_s"]),
    sweep_interval_s=config["sweep_interval_s"],
)
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
asyncio.run(run_worker(settings, options=options, store=store))
"""


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        message = f"Redis worker tests SKIPPED: cannot reach {REDIS_URL}: {error}"
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(message + " (REQUIRE_REDIS=1)", pytrace=False)
        pytest.skip(message)
    finally:
        await client.aclose()
    yield REDIS_URL


@pytest.fixture
async def queue_name(redis_url: str) -> AsyncIterator[str]:
    name = f"printvault-test:{uuid.uuid4().hex}"
    yield name
    client = aioredis.Redis.from_url(redis_url)
    await client.delete(name, f"autoclaim:{CONSUMER_GROUP}:{name}")
    await client.aclose()


@pytest.fixture
def worker_settings(settings: Settings, redis_url: str, tmp_path: Path) -> Settings:
    return dataclasses.replace(
        settings,
        job_broker_url=redis_url,
        storage_url=f"file://{tmp_path / 'objects'}",
        analysis_timeout_seconds=TIMEOUT_S,
    )


class Workers:
    """Starts worker processes; kills whatever is left at the end."""

    def __init__(self, settings: Settings, database_url: str, queue: str, logs: Path) -> None:
        self.settings = settings
        self.database_url = database_url
        self.queue = queue
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, *, read_delay_s: float = 0.0, sweep_interval_s: float = 1.0
    ) -> subprocess.Popen[bytes]:
        config = {
            "data_dir": str(self.settings.data_dir),
            "database_url": self.database_url,
            "store_root": self.settings.storage_url.removeprefix("file://"),
            "master_keys": {
                kid: base64.b64encode(key).decode()
                for kid, key in self.settings.master_keys.items()
            },
            "broker_url": self.settings.job_broker_url,
            "timeout_s": TIMEOUT_S,
            "margin_s": MARGIN_S,
            "queue": self.queue,
            "read_delay_s": read_delay_s,
            "sweep_interval_s": sweep_interval_s,
        }
        with (self.logs / f"worker-{len(self.started)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER],
                cwd=ROOT,
                env={**os.environ, "PV_TEST_WORKER": json.dumps(config)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        return process

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def workers(
    database: str, worker_settings: Settings, queue_name: str, tmp_path: Path
) -> Iterator[Workers]:
    logs = tmp_path / "logs"
    logs.mkdir()
    started = Workers(worker_settings, database, queue_name, logs)
    yield started
    started.kill_all()


async def enqueue(
    settings: Settings, store: LocalObjectStore, keyring: KeyRing, queue: str, model_id: uuid.UUID
) -> None:
    """Publish from this process, as the API server does."""
    producer = JobQueue(settings, store, keyring, JobOptions(queue_name=queue))
    await producer.start()
    try:
        await producer.enqueue_analysis(model_id)
    finally:
        await producer.stop()


async def test_worker_process_runs_enqueued_and_lost_jobs(
    workers: Workers, worker_settings, queue_name
):
    store = LocalObjectStore(Path(worker_settings.storage_url.removeprefix("file://")))
    keyring = KeyRing(worker_settings.master_keys, worker_settings.active_key_id)
    # A job whose worker died long ago, with no message left anywhere.
    orphan = await store_model(
        store,
        keyring,
        cube_stl(5.0),
        analysis_status=AnalysisStatus.RUNNING,
        analysis_started_at=utc_now() - timedelta(hours=1),
        analysis_attempts=1,
    )
    worker = workers.start()
    model = await store_model(store, keyring, cube_stl(20.0))
    await enqueue(worker_settings, store, keyring, queue_name, model.id)

    try:
        done = await wait_for_status(model.id, [AnalysisStatus.DONE, AnalysisStatus.FAILED], 30)
        recovered = await wait_for_status(orphan.id, [AnalysisStatus.DONE], 30)
    except AssertionError:
        print(workers.output())
        raise
    assert (done.analysis_status, done.analysis_attempts) == (AnalysisStatus.DONE, 1)
    assert (await ModelMetadata.get(model_id=model.id)).volume == pytest.approx(8000.0)
    assert recovered.analysis_attempts == 2
    # Issue 12: the worker then makes the previews, through the same Redis stream.
    for _ in range(600):
        if await ModelPreview.exists(model_id=model.id):
            break
        await asyncio.sleep(0.1)
    preview = await ModelPreview.get_or_none(model_id=model.id)
    assert preview is not None and preview.reason is None, workers.output()
    assert await store.exists(preview.png_key) and await store.exists(preview.glb_key)

    # SIGTERM is a graceful stop.
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0, workers.output()


async def test_job_of_a_killed_worker_is_finished_by_a_restarted_one(
    workers: Workers, worker_settings, queue_name
):
    store = LocalObjectStore(Path(worker_settings.storage_url.removeprefix("file://")))
    keyring = KeyRing(worker_settings.master_keys, worker_settings.active_key_id)
    model = await store_model(store, keyring, cube_stl())
    # This worker's store holds each read for a minute: it dies mid-job.
    doomed = workers.start(read_delay_s=60.0)
    await enqueue(worker_settings, store, keyring, queue_name, model.id)
    try:
        await wait_for_status(model.id, [AnalysisStatus.RUNNING], 30)
    except AssertionError:
        print(workers.output())
        raise
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    claimed = await Model3D.get(id=model.id)
    assert (claimed.analysis_status, claimed.analysis_attempts) == (AnalysisStatus.RUNNING, 1)

    # Once the lease is over, the sweep (and the broker's redelivery of the
    # unacknowledged message) bring the job back; the claim lets one run.
    workers.start()
    try:
        done = await wait_for_status(
            model.id, [AnalysisStatus.DONE, AnalysisStatus.FAILED], LEASE_S + 20
        )
    except AssertionError:
        print(workers.output())
        raise
    assert (done.analysis_status, done.analysis_attempts) == (AnalysisStatus.DONE, 2)
    assert await ModelMetadata.exists(model_id=model.id)
