"""Analysing an upload while it streams in: the real pre-forked child, fed
chunk by chunk as web/multipart.py feeds it, gives the same report as the
job's path; hostile files fail the same way; a stream that is abandoned says
so (the job then analyses the stored file) and leaves no child behind."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct
import time

import pytest

from domain.analysis import sandbox
from domain.analysis.errors import AnalysisFailed
from domain.analysis.sandbox import StreamAbandoned, StreamedAnalysis
from domain.analysis_job import AnalysisJob, Outcome
from storage.models import AnalysisStatus, Model3D, ModelMetadata
from tests.conftest import serving
from tests.helpers import Api, Caller
from tests.test_analysis_api import MODEL
from tests.test_analysis_child import FILES, OPTIONS, SETTINGS, isolated
from tests.test_jobs import CountingAnalyse, FlakyStore, cube_stl, make_job, store_model

TIMEOUT = float(SETTINGS.analysis_timeout_seconds)
MEMORY = SETTINGS.analysis_memory_bytes
POISON_STL = b"poison".ljust(80, b" ") + struct.pack("<I", 1_000_000) + b"\0" * 100


def streamed(data: bytes, fmt: str, *, hint: int = 0, chunk: int = 1000,
             memory: int = MEMORY) -> StreamedAnalysis:
    """Start a streamed analysis and feed it `data` in chunks, then finish it."""
    early = StreamedAnalysis.start(fmt, OPTIONS, TIMEOUT, memory, hint)
    assert early is not None
    for start in range(0, len(data), chunk):
        early.feed(data[start : start + chunk])
    early.finish(len(data))
    return early


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("kind", list(FILES))
def test_streamed_report_is_the_jobs_report(kind):
    make, fmt = FILES[kind]
    data = make()
    expected = isolated(data, fmt).to_dict()
    for hint in (0, len(data), len(data) // 3, len(data) + 5000):
        report = streamed(data, fmt, hint=hint).future.result(timeout=120)
        assert report.to_dict() | {"file_name": "x"} == expected | {"file_name": "x"}, hint


def test_hostile_file_fails_as_in_the_job():
    with pytest.raises(AnalysisFailed) as job:
        isolated(POISON_STL, "stl")
    with pytest.raises(AnalysisFailed) as stream:
        streamed(POISON_STL, "stl").future.result(timeout=60)
    assert stream.value.reason == job.value.reason


def test_memory_limit_holds_while_streaming(monkeypatch):
    # The limit is set before the child reads a byte: a 64 MiB file in 48 MiB fails.
    # All of it is queued at once; on a loaded machine the child may not even be
    # forked by then, which is "fell behind", not this test's subject.
    monkeypatch.setattr(sandbox, "MAX_BACKLOG_BYTES", 1 << 30)
    data = bytes(84) + b"\0" * (64 << 20)
    with pytest.raises(AnalysisFailed) as failed:
        streamed(data, "stl", chunk=1 << 20, memory=48 << 20).future.result(timeout=60)
    assert "memory limit" in failed.value.reason


def test_aborted_stream_is_abandoned_and_its_child_killed():
    make, fmt = FILES["stl-binary"]
    early = StreamedAnalysis.start(fmt, OPTIONS, TIMEOUT, MEMORY)
    assert early is not None
    early.feed(make()[:100])
    early.abort()
    with pytest.raises(StreamAbandoned):
        early.future.result(timeout=10)
    early.join(30)
    assert early._child is not None and _gone(early._child.pid)


def test_stream_missing_bytes_is_abandoned():
    make, fmt = FILES["stl-binary"]
    data = make()
    early = StreamedAnalysis.start(fmt, OPTIONS, TIMEOUT, MEMORY)
    assert early is not None
    early.feed(data[:-10])
    early.finish(len(data))
    with pytest.raises(StreamAbandoned):
        early.future.result(timeout=10)


def test_a_child_that_falls_behind_is_abandoned(monkeypatch):
    monkeypatch.setattr(sandbox, "MAX_BACKLOG_BYTES", 10)
    make, fmt = FILES["stl-binary"]
    early = StreamedAnalysis.start(fmt, OPTIONS, TIMEOUT, MEMORY)
    assert early is not None
    early.feed(make())
    with pytest.raises(StreamAbandoned):
        early.future.result(timeout=10)


def test_streams_at_once_are_bounded(monkeypatch):
    monkeypatch.setattr(sandbox, "_streams", sandbox.threading.BoundedSemaphore(1))
    make, fmt = FILES["stl-binary"]
    first = StreamedAnalysis.start(fmt, OPTIONS, TIMEOUT, MEMORY)
    assert first is not None
    assert StreamedAnalysis.start(fmt, OPTIONS, TIMEOUT, MEMORY) is None  # the job's turn
    first.abort()
    again = streamed(make(), fmt)  # the slot is free again
    assert again.future.result(timeout=60).volume == pytest.approx(6000, rel=1e-6)


# --- the job takes the streamed result (SQLite and PostgreSQL) ------------------------

# Sealed columns hold ciphertext under a fresh nonce each time: compared by what they seal.
_SEALED = ("hull_sealed", "walls_sealed")


def _metadata(row: ModelMetadata) -> dict:
    values = {k: v for k, v in row.__dict__.items() if not k.startswith("_")}
    skip = ("id", "model_id", "created_at", "analysed_at", *_SEALED)
    return {k: v for k, v in values.items() if k not in skip}


async def test_job_records_the_streamed_result_without_fetching(
    database, job_settings, store, keyring
):
    data = cube_stl(10.0)
    model = await store_model(store, keyring, data)
    watched, analyse = FlakyStore(store, failures=0), CountingAnalyse()
    job = make_job(job_settings, watched, keyring, analyse=analyse)
    early = streamed(data, "stl")

    assert await job.run(model.id, early=early) is Outcome.DONE
    assert (watched.reads, analyse.calls) == (0, 0)  # no fetch, no decryption, no second child
    meta = await ModelMetadata.get(model_id=model.id)
    assert (meta.file_name, meta.file_size) == ("cube.stl", len(data))
    assert meta.volume == pytest.approx(1000.0)
    assert meta.hull_sealed is not None  # the streamed path keeps what a quote needs
    # Idempotent: a duplicate message (or the sweep) finds nothing to do.
    assert await job.run(model.id) is Outcome.DROPPED
    assert (watched.reads, analyse.calls) == (0, 0)

    # Identical to the job's own path on the same file.
    other = await store_model(store, keyring, data)
    assert await make_job(job_settings, store, keyring).run(other.id) is Outcome.DONE
    assert _metadata(await ModelMetadata.get(model_id=other.id)) == _metadata(meta)


async def test_job_analyses_the_stored_file_when_the_stream_was_abandoned(
    database, job_settings, store, keyring
):
    data = cube_stl(10.0)
    model = await store_model(store, keyring, data)
    analyse = CountingAnalyse()
    job = make_job(job_settings, store, keyring, analyse=analyse)
    early = StreamedAnalysis.start("stl", OPTIONS, TIMEOUT, MEMORY)
    assert early is not None
    early.feed(data[:50])
    early.abort()

    assert await job.run(model.id, early=early) is Outcome.DONE
    assert analyse.calls == 1
    assert (await Model3D.get(id=model.id)).analysis_status is AnalysisStatus.DONE


async def test_streamed_failure_of_the_file_is_final(database, job_settings, store, keyring):
    model = await store_model(store, keyring, POISON_STL, file_name="broken.stl")
    analyse = CountingAnalyse()
    job = make_job(job_settings, store, keyring, analyse=analyse)

    assert await job.run(model.id, early=streamed(POISON_STL, "stl")) is Outcome.FAILED
    failed = await Model3D.get(id=model.id)
    assert analyse.calls == 0 and failed.analysis_error
    assert not await ModelMetadata.exists(model_id=model.id)


# --- over the API: the upload handler feeds the child -----------------------------------


async def _analysed(api: Api, token: str, data: bytes, name: str) -> dict:
    response = await api.upload(data, name, token)
    body = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    model_id = body["data"]["uploadModel"]["id"]
    for _ in range(600):
        model = (await api.ok(MODEL, {"id": model_id}, token))["model"]
        if model["analysisStatus"] in ("DONE", "FAILED"):
            return model
        await asyncio.sleep(0.05)
    raise AssertionError("the analysis did not finish")


def _all_streams_released(within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if sandbox._streams._value == sandbox.MAX_STREAMS:  # type: ignore[attr-defined]
            return True
        time.sleep(0.02)
    return False


async def test_upload_is_analysed_as_it_streams_in(api: Api, customer: Caller, monkeypatch):
    async def no_fetch(self, model):
        raise AssertionError("the job fetched the stored file")

    monkeypatch.setattr(AnalysisJob, "_fetch", no_fetch)
    make, _ = FILES["stl-binary"]
    model = await _analysed(api, customer.token, make(), "box.stl")
    assert model["analysisStatus"] == "DONE", model["analysisError"]
    assert model["metadata"]["volume"] == pytest.approx(6000, rel=1e-6)
    assert _all_streams_released()


async def test_refused_upload_leaves_no_child(api: Api, customer: Caller, monkeypatch):
    started: list[StreamedAnalysis] = []
    original = StreamedAnalysis.start

    def watched(*args, **kwargs):
        early = original(*args, **kwargs)
        started.append(early)
        return early

    monkeypatch.setattr(StreamedAnalysis, "start", watched)
    cube = cube_stl(10.0)
    many = cube[:80] + struct.pack("<I", 12 * 40) + cube[84:] * 40  # 24 KB: sniffed early
    truncated = many[:-30]  # the binary STL's size check fails at the end of the stream
    response = await api.upload(truncated, "box.stl", customer.token)
    assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_FORMAT"
    assert len(started) == 1 and started[0] is not None
    with pytest.raises(StreamAbandoned):
        started[0].future.result(timeout=10)
    started[0].join(30)
    assert started[0]._child is not None and _gone(started[0]._child.pid)
    assert _all_streams_released()


async def test_switched_off_the_job_analyses_the_stored_file(
    database, settings, tmp_path, monkeypatch
):
    def refuse(*args, **kwargs):
        raise AssertionError("a streamed analysis was started")

    monkeypatch.setattr(StreamedAnalysis, "start", refuse)
    off = dataclasses.replace(settings, analyse_while_uploading=False,
                   storage_url=f"file://{tmp_path / 'objects'}")
    async with serving(off) as api:
        token = (await api.customer()).token
        make, _ = FILES["stl-binary"]
        model = await _analysed(api, token, make(), "box.stl")
    assert model["analysisStatus"] == "DONE", model["analysisError"]
    assert model["metadata"]["volume"] == pytest.approx(6000, rel=1e-6)


def test_streamed_analysis_is_bounded_by_the_timeout():
    make, fmt = FILES["step"]
    data = make()
    early = StreamedAnalysis.start(fmt, OPTIONS, 0.01, MEMORY)
    assert early is not None
    early.feed(data)
    early.finish(len(data))
    with pytest.raises(AnalysisFailed) as failed:
        early.future.result(timeout=30)
    assert "exceeded" in failed.value.reason
    early.join(30)
    assert early._child is not None and _gone(early._child.pid)


def test_streamed_timeout_runs_from_the_end_of_the_upload():
    # A slow upload is not the analysis' time: 3.3 s of upload, 3 s of timeout.
    make, fmt = FILES["stl-binary"]
    data = make()
    early = StreamedAnalysis.start(fmt, OPTIONS, 3.0, MEMORY)
    assert early is not None
    early.feed(data[:100])
    time.sleep(3.3)
    early.feed(data[100:])
    early.finish(len(data))
    assert early.future.result(timeout=30).volume == pytest.approx(6000, rel=1e-6)


def test_a_dead_child_does_not_kill_the_server_whatever_sigpipe_says():
    # gmsh, once initialised in a process, resets SIGPIPE to "terminate".
    import signal

    previous = signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        early = StreamedAnalysis.start("stl", OPTIONS, TIMEOUT, 48 << 20)
        assert early is not None
        for _ in range(64):  # the child dies of its memory limit; writes go on
            early.feed(b"\0" * (1 << 20))
        early.finish(64 << 20)
        with pytest.raises(AnalysisFailed):
            early.future.result(timeout=60)
        early.join(30)
    finally:
        signal.signal(signal.SIGPIPE, previous)
