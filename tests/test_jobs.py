"""Analysis jobs in-process: outcomes, retries, claims, recovery (SQLite and PostgreSQL).

Files are real: a generated STL, encrypted with storage.crypto into a local
object store, analysed by the real sandbox. Test doubles stand in only for
the store's failures and for watching calls to the analysis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from typing import Any

import pytest
from tortoise.timezone import now as utc_now

from domain.analysis.sandbox import run_isolated
from domain.analysis_job import (
    INTERNAL_ERROR,
    MISSING_FILE,
    TOO_MANY_ATTEMPTS,
    AnalysisJob,
    JobLimits,
    Outcome,
    RetryPolicy,
    claim,
)
from runtime.jobs import JobOptions, JobQueue
from runtime.settings import Settings
from storage.crypto import KeyRing, encrypt_stream, new_data_key
from storage.models import AnalysisStatus, Company, CompanyKind, Model3D, ModelMetadata, Role, User
from storage.objects import ObjectInfo, ObjectStore, StoreUnavailable

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05)
CUBE_CORNERS = [
    (0, 0, 0),
    (1, 0, 0),
    (1, 1, 0),
    (0, 1, 0),
    (0, 0, 1),
    (1, 0, 1),
    (1, 1, 1),
    (0, 1, 1),
]
CUBE_FACES = [
    (0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4),
    (1, 2, 6), (1, 6, 5), (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7),
]  # fmt: skip


def cube_stl(size: float = 10.0) -> bytes:
    """A closed, outward-facing cube as binary STL."""
    out = bytearray(b"generated test cube".ljust(80, b" "))
    out += struct.pack("<I", len(CUBE_FACES))
    for face in CUBE_FACES:
        out += struct.pack("<3f", 0.0, 0.0, 0.0)
        for corner in face:
            out += struct.pack("<3f", *(size * c for c in CUBE_CORNERS[corner]))
        out += b"\0\0"
    return bytes(out)


# A binary STL header promising a million triangles, followed by almost none.
POISON_STL = b"poison".ljust(80, b" ") + struct.pack("<I", 1_000_000) + b"\0" * 100


async def store_model(
    store: ObjectStore,
    keyring: KeyRing,
    data: bytes,
    *,
    file_name: str = "cube.stl",
    fmt: str = "stl",
    **row: Any,
) -> Model3D:
    """A customer's Model3D row with its file encrypted in the store, as an upload leaves it."""
    company = await Company.create(name="Acme", kind=CompanyKind.CUSTOMER)
    owner = await User.create(
        email=f"u-{uuid.uuid4().hex[:10]}@example.com",
        first_name="Ada",
        last_name="Lovelace",
        role=Role.CUSTOMER,
        company=company,
        password_hash="not-a-real-hash",
    )
    object_key = f"models/{uuid.uuid4()}"
    data_key, wrapped = new_data_key(keyring)
    await store.put(object_key, encrypt_stream(_one(data), data_key, object_key.encode()))
    fields = {"analysis_status": AnalysisStatus.PENDING, **row}
    return await Model3D.create(
        company=company,
        owner=owner,
        name="a part",
        file_name=file_name,
        file_size=len(data),
        format=fmt,
        object_key=object_key,
        wrapped_key=wrapped.to_str(),
        **fields,
    )


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def wait_for_status(
    model_id: uuid.UUID, statuses: Iterable[AnalysisStatus], within_s: float = 20.0
) -> Model3D:
    wanted = set(statuses)
    deadline = time.monotonic() + within_s
    while True:
        model = await Model3D.get(id=model_id)
        if model.analysis_status in wanted:
            return model
        if time.monotonic() > deadline:
            raise AssertionError(f"model stayed {model.analysis_status}, wanted {wanted}")
        await asyncio.sleep(0.05)


class CountingAnalyse:
    """The real sandboxed analysis, counting calls; optionally held at a gate first."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self._gate = gate

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        self.entered.set()
        if self._gate is not None:
            self._gate.wait(timeout=20)
        return run_isolated(*args)


class FlakyStore:
    """An object store whose first `failures` reads fail as an unreachable store would."""

    def __init__(self, inner: ObjectStore, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.reads = 0

    async def get(self, key: str) -> AsyncIterator[bytes]:
        self.reads += 1
        if self.reads <= self.failures:
            raise StoreUnavailable("connection refused (test double)")
        async for chunk in self.inner.get(key):
            yield chunk

    async def put(self, key: str, chunks: AsyncIterator[bytes]) -> int:
        return await self.inner.put(key, chunks)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        return self.inner.list(prefix)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


def make_job(
    settings: Settings, store: ObjectStore, keyring: KeyRing, **kwargs: Any
) -> AnalysisJob:
    limits = JobLimits(retry=FAST_RETRY, lease_margin_s=5.0)
    return AnalysisJob(settings, store, keyring, kwargs.pop("limits", limits), **kwargs)


# --- outcomes --------------------------------------------------------------------------


async def test_good_file_ends_done_with_metadata(database, job_settings, store, keyring):
    model = await store_model(store, keyring, cube_stl(10.0))
    queue = JobQueue(job_settings, store, keyring, JobOptions(concurrency=2))
    await queue.start()
    try:
        await queue.enqueue_analysis(model.id)
        done = await wait_for_status(model.id, [AnalysisStatus.DONE, AnalysisStatus.FAILED])
    finally:
        await queue.stop()
    assert (done.analysis_status, done.analysis_error, done.analysis_attempts) == (
        AnalysisStatus.DONE,
        None,
        1,
    )
    meta = await ModelMetadata.get(model_id=model.id)
    assert (meta.file_name, meta.format, meta.file_size) == ("cube.stl", "stl", len(cube_stl()))
    assert (meta.size_x, meta.size_y, meta.size_z) == pytest.approx((10.0, 10.0, 10.0))
    assert meta.volume == pytest.approx(1000.0)
    assert meta.surface_area == pytest.approx(600.0)
    assert (meta.triangle_count, meta.body_count, meta.is_watertight) == (12, 1, True)
    assert meta.printable is True
    assert all(set(issue) == {"code", "severity", "message"} for issue in meta.issues)


async def test_poison_file_fails_once_with_readable_reason(database, job_settings, store, keyring):
    model = await store_model(store, keyring, POISON_STL, file_name="broken.stl")
    analyse = CountingAnalyse()
    job = make_job(job_settings, store, keyring, analyse=analyse)

    assert await job.run(model.id) is Outcome.FAILED
    # A duplicate message (redelivery, sweep) finds nothing to do: no second analysis.
    assert await job.run(model.id) is Outcome.DROPPED

    failed = await Model3D.get(id=model.id)
    assert failed.analysis_status is AnalysisStatus.FAILED
    assert analyse.calls == 1 and failed.analysis_attempts == 1
    reason = failed.analysis_error or ""
    assert reason and reason != INTERNAL_ERROR
    assert "Traceback" not in reason and "/" not in reason
    assert not await ModelMetadata.exists(model_id=model.id)


async def test_unexpected_error_fails_with_generic_reason(
    database, job_settings, store, keyring, caplog
):
    model = await store_model(store, keyring, cube_stl())

    def explode(*args: Any) -> Any:
        raise RuntimeError("disk /var/secret/path on fire")

    job = make_job(job_settings, store, keyring, analyse=explode)
    with caplog.at_level("ERROR", logger="printvault.analysis"):
        assert await job.run(model.id) is Outcome.FAILED
    failed = await Model3D.get(id=model.id)
    assert failed.analysis_error == INTERNAL_ERROR
    # The details are for the server's log only.
    assert any("on fire" in (r.exc_text or "") for r in caplog.records)


async def test_missing_stored_file_fails_with_reason(database, job_settings, store, keyring):
    model = await store_model(store, keyring, cube_stl())
    await store.delete(model.object_key)
    job = make_job(job_settings, store, keyring)
    assert await job.run(model.id) is Outcome.FAILED
    assert (await Model3D.get(id=model.id)).analysis_error == MISSING_FILE


# --- transient errors ------------------------------------------------------------------


async def test_transient_store_error_is_retried_then_succeeds(
    database, job_settings, store, keyring
):
    model = await store_model(store, keyring, cube_stl())
    flaky = FlakyStore(store, failures=2)
    job = make_job(job_settings, flaky, keyring)

    assert await job.run(model.id) is Outcome.DONE
    assert flaky.reads == 3
    done = await Model3D.get(id=model.id)
    assert (done.analysis_status, done.analysis_attempts) == (AnalysisStatus.DONE, 1)


async def test_long_store_outage_hands_the_model_back_to_the_sweep(
    database, job_settings, store, keyring
):
    model = await store_model(store, keyring, cube_stl())
    down = FlakyStore(store, failures=10**6)
    job = make_job(job_settings, down, keyring)

    assert await job.run(model.id) is Outcome.POSTPONED
    assert down.reads == FAST_RETRY.max_attempts
    postponed = await Model3D.get(id=model.id)
    assert (postponed.analysis_status, postponed.analysis_error) == (AnalysisStatus.PENDING, None)

    # Once the store is back, the sweep's next pass finishes the job.
    queue = JobQueue(job_settings, store, keyring, JobOptions(pending_grace_s=0.0))
    try:
        assert await queue.sweep() == [model.id]
        done = await wait_for_status(model.id, [AnalysisStatus.DONE])
    finally:
        await queue.stop()
    assert done.analysis_attempts == 2


# --- claims and recovery ---------------------------------------------------------------


async def test_two_concurrent_claims_only_one_wins(database, job_settings, store, keyring):
    model = await store_model(store, keyring, cube_stl())
    claims = await asyncio.gather(*(claim(model.id, 60.0, 5) for _ in range(4)))
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1 and winners[0].token == 1
    assert (await Model3D.get(id=model.id)).analysis_attempts == 1


async def test_two_concurrent_jobs_analyse_once(database, job_settings, store, keyring):
    model = await store_model(store, keyring, cube_stl())
    analyse = CountingAnalyse()
    job = make_job(job_settings, store, keyring, analyse=analyse)
    outcomes = await asyncio.gather(job.run(model.id), job.run(model.id))
    assert sorted(outcomes) == sorted([Outcome.DONE, Outcome.DROPPED])
    assert analyse.calls == 1


async def test_analysis_runs_off_the_event_loop(database, job_settings, store, keyring):
    model = await store_model(store, keyring, cube_stl())
    gate = threading.Event()
    analyse = CountingAnalyse(gate)
    job = make_job(job_settings, store, keyring, analyse=analyse)
    running = asyncio.create_task(job.run(model.id))
    assert await asyncio.to_thread(analyse.entered.wait, 20)
    # The analysis is blocked in its thread, yet the loop still serves others.
    ticks = 0
    for _ in range(10):
        await asyncio.sleep(0.001)
        ticks += 1
    gate.set()
    assert ticks == 10
    assert await running is Outcome.DONE


async def test_running_row_past_its_deadline_is_reclaimed(database, job_settings, store, keyring):
    job = make_job(job_settings, store, keyring)
    long_ago = utc_now() - timedelta(seconds=job.lease_s + 5)
    stale = await store_model(
        store,
        keyring,
        cube_stl(),
        analysis_status=AnalysisStatus.RUNNING,
        analysis_started_at=long_ago,
        analysis_attempts=1,
    )
    alive = await store_model(
        store,
        keyring,
        cube_stl(),
        analysis_status=AnalysisStatus.RUNNING,
        analysis_started_at=utc_now(),
        analysis_attempts=1,
    )
    assert await claim(alive.id, job.lease_s, 5) is None
    taken = await claim(stale.id, job.lease_s, 5)
    assert taken is not None and taken.token == 2


async def test_sweep_at_start_up_requeues_lost_jobs(database, job_settings, store, keyring):
    options = JobOptions(limits=JobLimits(retry=FAST_RETRY, lease_margin_s=5.0))
    lease_s = job_settings.analysis_timeout_seconds + 5.0
    long_ago = utc_now() - timedelta(seconds=lease_s + 5)
    running = {"analysis_status": AnalysisStatus.RUNNING, "analysis_attempts": 1}
    stale = await store_model(store, keyring, cube_stl(), analysis_started_at=long_ago, **running)
    alive = await store_model(store, keyring, cube_stl(), analysis_started_at=utc_now(), **running)
    lost = await store_model(store, keyring, cube_stl())  # its message never arrived
    await Model3D.filter(id=lost.id).update(created_at=utc_now() - timedelta(minutes=5))
    fresh = await store_model(store, keyring, cube_stl())  # its message may be on its way

    queue = JobQueue(job_settings, store, keyring, options)
    await queue.start()
    try:
        for model in (stale, lost):
            done = await wait_for_status(model.id, [AnalysisStatus.DONE])
            assert done.analysis_attempts == (2 if model is stale else 1)
        assert await queue.sweep() == []
    finally:
        await queue.stop()
    untouched = {m.id: m for m in await Model3D.filter(id__in=[alive.id, fresh.id])}
    assert untouched[alive.id].analysis_status is AnalysisStatus.RUNNING
    assert untouched[alive.id].analysis_attempts == 1
    assert untouched[fresh.id].analysis_status is AnalysisStatus.PENDING


async def test_a_model_that_keeps_killing_its_worker_is_abandoned(
    database, job_settings, store, keyring
):
    model = await store_model(
        store,
        keyring,
        cube_stl(),
        analysis_status=AnalysisStatus.RUNNING,
        analysis_started_at=utc_now() - timedelta(hours=1),
        analysis_attempts=5,
    )
    assert await claim(model.id, 60.0, max_claims=5) is None
    abandoned = await Model3D.get(id=model.id)
    assert abandoned.analysis_status is AnalysisStatus.FAILED
    assert abandoned.analysis_error == TOO_MANY_ATTEMPTS


# --- deleted models --------------------------------------------------------------------


async def test_job_of_a_deleted_model_is_dropped(database, job_settings, store, keyring):
    model = await store_model(store, keyring, cube_stl())
    await model.delete()
    analyse = CountingAnalyse()
    job = make_job(job_settings, store, keyring, analyse=analyse)
    assert await job.run(model.id) is Outcome.DROPPED
    assert await job.run(uuid.uuid4()) is Outcome.DROPPED
    assert analyse.calls == 0


async def test_model_deleted_during_analysis_is_dropped_quietly(
    database, job_settings, store, keyring, caplog
):
    model = await store_model(store, keyring, cube_stl())
    gate = threading.Event()
    analyse = CountingAnalyse(gate)
    job = make_job(job_settings, store, keyring, analyse=analyse)
    running = asyncio.create_task(job.run(model.id))
    assert await asyncio.to_thread(analyse.entered.wait, 20)
    await Model3D.filter(id=model.id).delete()
    await store.delete(model.object_key)
    gate.set()
    with caplog.at_level("WARNING"):
        assert await running is Outcome.DROPPED
    assert not await ModelMetadata.exists(model_id=model.id)
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


# --- enqueueing ------------------------------------------------------------------------


async def test_enqueue_with_the_broker_down_does_not_fail_the_upload(
    database, job_settings, store, keyring
):
    # Port 9 (discard) is closed on test machines: the broker is unreachable.
    unreachable = dataclasses.replace(job_settings, job_broker_url="redis://127.0.0.1:9/0")
    queue = JobQueue(unreachable, store, keyring)
    # Logs, does not raise, does not hang (a generous bound, for a loaded machine).
    async with asyncio.timeout(60):
        await queue.enqueue_analysis(uuid.uuid4())
