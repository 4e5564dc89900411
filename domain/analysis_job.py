"""One analysis job: claim a model, fetch and decrypt its file, analyse it, record the result.

The `Model3D` row is the source of truth, not the queue: a message only says
"look at this model". Whoever runs it first *claims* the row with one
conditional UPDATE (PENDING, or RUNNING past its deadline, -> RUNNING), so two
workers never analyse the same model at once, and a duplicate or late message
is dropped with one SELECT. Every claim increments `analysis_attempts`; the new
value is the claim's fencing token, and every later write names it, so a
worker whose claim was taken over (or whose model was deleted) writes nothing.

`analysis_started_at` is the start of the current lease: set when the row is
claimed, renewed just before the CPU work, and set when the recovery sweep
re-queues the row. A RUNNING row whose lease is older than the analysis
timeout plus a margin belongs to a worker presumed dead.

Failures fall into three kinds:
- transient (store or database unreachable): the step is retried with
  exponential backoff; if that runs out, the row goes back to PENDING and the
  recovery sweep tries again later;
- the file itself (`AnalysisFailed`): FAILED once, with the readable reason;
- anything else: FAILED with a generic reason, the details go to the log only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, TypeVar
from uuid import UUID

import asyncpg
from tortoise.exceptions import DBConnectionError, OperationalError
from tortoise.expressions import Q
from tortoise.queryset import QuerySet
from tortoise.timezone import now as utc_now
from tortoise.transactions import in_transaction

from domain.analysis.errors import AnalysisFailed
from domain.analysis.options import AnalysisOptions
from domain.analysis.report import FirstReport, MeshReport
from domain.analysis.sandbox import StreamAbandoned, StreamedAnalysis, run_isolated
from domain.part_facts import sealed_fields
from runtime import metrics
from runtime.settings import Settings
from storage.crypto import KeyRing, WrappedKey, decrypt_stream, unwrap
from storage.models import AnalysisStatus, Model3D, ModelMetadata
from storage.objects import ObjectMissing, ObjectStore, StoreUnavailable

log = logging.getLogger("printvault.analysis")

T = TypeVar("T")

INTERNAL_ERROR = "internal error during analysis"
MISSING_FILE = "The uploaded file could not be found in storage."
TOO_MANY_ATTEMPTS = "The analysis was interrupted too many times and has been abandoned."

PENDING, RUNNING = AnalysisStatus.PENDING, AnalysisStatus.RUNNING


class Analyse(Protocol):
    """The signature of `domain.analysis.sandbox.run_isolated`."""

    def __call__(
        self,
        data: bytes,
        file_name: str,
        fmt: str,
        options: AnalysisOptions,
        timeout_s: float,
        memory_bytes: int,
        on_first: FirstReport | None = None,
    ) -> MeshReport: ...


class Outcome(StrEnum):
    DONE = "done"
    FAILED = "failed"
    # Nothing to do: already claimed, finished, or deleted.
    DROPPED = "dropped"
    # A transient error outlasted the retries; the sweep will try again.
    POSTPONED = "postponed"


# Announces a first report recorded as DONE while its checks still run.
FirstDone = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Stages:
    """An analysis under way: the report without the wall check (which never comes
    when there are no walls to check) and the complete one."""

    first: asyncio.Future[MeshReport]
    final: asyncio.Future[MeshReport]

    def __post_init__(self) -> None:
        # Retrieved here too: a final report nobody waits for any more (the model
        # was deleted after its first) must not log "exception never retrieved".
        self.final.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def first_or_final(self) -> MeshReport:
        """Whichever comes first; the complete report if both are in (one write)."""
        await asyncio.wait((self.first, self.final), return_when=asyncio.FIRST_COMPLETED)
        return self.final.result() if self.final.done() else self.first.result()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient errors, per step of a job."""

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, failed_attempts: int) -> float:
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (failed_attempts - 1))
        # Jitter keeps many workers from hammering a recovering store in step.
        return ceiling * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class JobLimits:
    retry: RetryPolicy = RetryPolicy()
    # Added to the analysis timeout to get the lease: covers fetch, decrypt, writes.
    lease_margin_s: float = 60.0
    # A model claimed this many times without finishing is failed, so that a
    # file which kills its worker cannot loop forever.
    max_claims: int = 5


@dataclass(frozen=True)
class Claim:
    model: Model3D
    token: int  # the row's analysis_attempts after this claim


# Lost or refused connections, a server starting or shutting down, and
# serialization failures or deadlocks: all succeed when simply tried again.
_POSTGRES_TRANSIENT = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.TransactionRollbackError,
)


def is_transient(error: BaseException) -> bool:
    """Worth retrying: the store or the database could not be reached just now."""
    if isinstance(error, StoreUnavailable | DBConnectionError | ConnectionError | TimeoutError):
        return True
    if isinstance(error, _POSTGRES_TRANSIENT):
        return True
    # SQLite: another process holds the write lock for longer than the busy timeout.
    cause = error.args[0] if isinstance(error, OperationalError) and error.args else None
    return isinstance(cause, sqlite3.OperationalError) and "locked" in str(cause)


# --- the row: claim, renew, settle -----------------------------------------------------


def _claimable(lease_cutoff: datetime) -> Q:
    lease_over = Q(analysis_started_at__lt=lease_cutoff) | Q(analysis_started_at__isnull=True)
    return Q(analysis_status=PENDING) | (Q(analysis_status=RUNNING) & lease_over)


def stranded(now: datetime, lease_s: float, pending_grace_s: float) -> Q:
    """Rows whose job was probably lost: PENDING for a while, or RUNNING past the lease."""
    pending_cutoff = now - timedelta(seconds=pending_grace_s)
    lease_cutoff = now - timedelta(seconds=lease_s)
    return (
        Q(analysis_status=PENDING, analysis_started_at__lt=pending_cutoff)
        | Q(
            analysis_status=PENDING, analysis_started_at__isnull=True, created_at__lt=pending_cutoff
        )
        | Q(analysis_status=RUNNING, analysis_started_at__lt=lease_cutoff)
        | Q(analysis_status=RUNNING, analysis_started_at__isnull=True)
    )


async def claim(model_id: UUID, lease_s: float, max_claims: int) -> Claim | None:
    """Take the model for analysis, or None if it is not ours to take."""
    model = await Model3D.get_or_none(id=model_id)
    now = utc_now()
    lease_cutoff = now - timedelta(seconds=lease_s)
    if model is None or not _is_claimable(model, lease_cutoff):
        return None
    # Compare-and-set on the attempt counter: of concurrent claimers, one wins.
    current = Model3D.filter(
        _claimable(lease_cutoff), id=model_id, analysis_attempts=model.analysis_attempts
    )
    if model.analysis_attempts >= max_claims:
        await current.update(
            analysis_status=AnalysisStatus.FAILED, analysis_error=TOO_MANY_ATTEMPTS
        )
        log.error("model %s: abandoned after %d attempts", model_id, model.analysis_attempts)
        return None
    token = model.analysis_attempts + 1
    taken = await current.update(
        analysis_status=RUNNING, analysis_started_at=now, analysis_attempts=token
    )
    if taken != 1:
        return None
    model.analysis_status, model.analysis_started_at, model.analysis_attempts = RUNNING, now, token
    return Claim(model, token)


def _is_claimable(model: Model3D, lease_cutoff: datetime) -> bool:
    if model.analysis_status == PENDING:
        return True
    started = model.analysis_started_at
    return model.analysis_status == RUNNING and (started is None or started < lease_cutoff)


def _held(held: Claim) -> QuerySet[Model3D]:
    return Model3D.filter(id=held.model.id, analysis_status=RUNNING, analysis_attempts=held.token)


def _done_by(held: Claim) -> QuerySet[Model3D]:
    """The row as this claim's first report left it (not re-analysed, not deleted)."""
    return Model3D.filter(
        id=held.model.id, analysis_status=AnalysisStatus.DONE, analysis_attempts=held.token
    )


async def renew(held: Claim) -> bool:
    """Restart the lease; False if the claim was lost or the model deleted."""
    return await _held(held).update(analysis_started_at=utc_now()) == 1


async def release(held: Claim) -> bool:
    """Hand the model back to the sweep (PENDING), e.g. after a long store outage."""
    return await _held(held).update(analysis_status=PENDING, analysis_started_at=utc_now()) == 1


async def record_done(
    held: Claim, report: MeshReport, sealed: dict[str, bytes | None] | None = None
) -> bool:
    """Store the metadata (with the sealed hull and walls) and mark DONE in one
    transaction, if the claim still holds."""
    async with in_transaction():
        if await _held(held).update(analysis_status=AnalysisStatus.DONE, analysis_error=None) != 1:
            return False
        await ModelMetadata.filter(model_id=held.model.id).delete()
        await ModelMetadata.create(
            model_id=held.model.id, **_metadata_fields(report), **(sealed or {})
        )
    return True


async def record_checks(
    held: Claim, report: MeshReport, sealed: dict[str, bytes | None] | None = None
) -> bool:
    """Replace the first report with the complete one, if the row is still DONE
    under this claim."""
    async with in_transaction():
        # A no-op update: the row check and its lock in one statement.
        if await _done_by(held).update(analysis_error=None) != 1:
            return False
        await ModelMetadata.filter(model_id=held.model.id).delete()
        await ModelMetadata.create(
            model_id=held.model.id, **_metadata_fields(report), **(sealed or {})
        )
    return True


async def stranded_checks(now: datetime, lease_s: float, limit: int) -> list[tuple[UUID, int]]:
    """DONE models whose checks outlived the lease: the process running them died.
    (model id, claim token) pairs for `reopen`."""
    cutoff = now - timedelta(seconds=lease_s)
    rows = (
        await ModelMetadata.filter(
            ~Q(pending_checks=""),
            model__analysis_status=AnalysisStatus.DONE,
            model__analysis_started_at__lt=cutoff,
        )
        .limit(limit)
        .values_list("model_id", "model__analysis_attempts")
    )
    return [(UUID(str(model_id)), int(token)) for model_id, token in rows]


async def reopen(model_id: UUID, token: int, now: datetime) -> bool:
    """Back to PENDING for a complete analysis, unless someone else got there first."""
    reopened = await Model3D.filter(
        id=model_id, analysis_status=AnalysisStatus.DONE, analysis_attempts=token
    ).update(analysis_status=PENDING, analysis_started_at=now)
    return reopened == 1


async def record_failed(held: Claim, reason: str) -> bool:
    async with in_transaction():
        failed = await _held(held).update(
            analysis_status=AnalysisStatus.FAILED, analysis_error=reason
        )
        if failed != 1:
            return False
        # Metadata is only ever shown for DONE; drop a stale one from an earlier run.
        await ModelMetadata.filter(model_id=held.model.id).delete()
    return True


def _metadata_fields(report: MeshReport) -> dict[str, object]:
    return {
        "file_name": report.file_name,
        "file_size": report.file_size,
        "format": report.format,
        "size_x": report.dimensions.x,
        "size_y": report.dimensions.y,
        "size_z": report.dimensions.z,
        "volume": report.volume,
        "surface_area": report.surface_area,
        "triangle_count": report.triangle_count,
        "body_count": report.body_count,
        "is_watertight": report.is_watertight,
        "printable": report.printability.printable,
        "pending_checks": ",".join(report.pending_checks),
        "issues": [
            {"code": i.code, "severity": i.severity, "message": i.message}
            for i in report.printability.issues
        ],
    }


# --- the job ---------------------------------------------------------------------------


class AnalysisJob:
    """Analyses one model per `run` call; calls may run concurrently."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        keyring: KeyRing,
        limits: JobLimits = JobLimits(),
        *,
        analyse: Analyse = run_isolated,
    ) -> None:
        self.settings = settings
        self.store = store
        self.keyring = keyring
        self.limits = limits
        self._analyse = analyse

    @property
    def lease_s(self) -> float:
        return self.settings.analysis_timeout_seconds + self.limits.lease_margin_s

    async def run(
        self,
        model_id: UUID,
        early: StreamedAnalysis | None = None,
        on_first_done: FirstDone | None = None,
    ) -> Outcome:
        """Claim and analyse the model; `early` is an analysis of its plaintext
        made while it was uploaded, whose result is used if it has one.

        When the report without the wall check is recorded as DONE first,
        `on_first_done` is awaited then; the outcome is DONE once the complete
        report replaced it."""
        try:
            held = await self._retry(lambda: claim(model_id, self.lease_s, self.limits.max_claims))
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning(
                "model %s: not claimed (%s); the recovery sweep will retry", model_id, error
            )
            return Outcome.POSTPONED
        if held is None:
            log.debug("model %s: nothing to do", model_id)
            return Outcome.DROPPED
        outcome = ["error"]
        with metrics.timed(metrics.ANALYSIS, outcome):
            try:
                result = await self._process(held, early, on_first_done)
            except Exception as error:
                result = await self._settle_error(held, error)
            outcome[0] = str(result.value).lower()
        return result

    async def _process(
        self, held: Claim, early: StreamedAnalysis | None, on_first_done: FirstDone | None
    ) -> Outcome:
        model = held.model
        stages = _streamed(early) if early is not None else None
        report = await self._early_report(model, stages) if stages is not None else None
        if stages is None or report is None:
            stages = await self._fetch_and_start(held)
            if stages is None:
                return Outcome.DROPPED
            report = await stages.first_or_final()
        if not await self._record(held, report, record_done):
            log.info("model %s: analysed, but deleted or taken over meanwhile", model.id)
            return Outcome.DROPPED
        if not report.pending_checks:
            log.info("model %s: analysis done", model.id)
            return Outcome.DONE
        log.info("model %s: analysis done, checks %s running", model.id, report.pending_checks)
        if on_first_done is not None:
            await on_first_done()
        complete = await self._complete(model, stages.final, report)
        if not await self._record(held, complete, record_checks):
            log.info("model %s: checked, but deleted or re-analysed meanwhile", model.id)
            return Outcome.DROPPED
        log.info("model %s: checks done", model.id)
        return Outcome.DONE

    async def _record(self, held: Claim, report: MeshReport, record) -> bool:
        # The child only returns the hull and walls; sealing them is the parent's job.
        sealed = sealed_fields(report, self.keyring, held.model)
        return bool(await self._retry(lambda: record(held, report, sealed)))

    async def _complete(
        self, model: Model3D, final: asyncio.Future[MeshReport], first: MeshReport
    ) -> MeshReport:
        """The complete report; the first one, naming its checks as not done, if the
        child did not get that far (time or memory limit, crash)."""
        try:
            return replace(await final, file_name=model.file_name)
        except AnalysisFailed as failed:
            reason = failed.reason
        except StreamAbandoned:
            reason = "The analysis was interrupted."
        except Exception:
            log.exception("model %s: unexpected error during the checks", model.id)
            reason = "The analysis was interrupted."
        log.info("model %s: checks not finished: %s", model.id, reason)
        return first.checks_abandoned(reason)

    async def _early_report(self, model: Model3D, stages: Stages) -> MeshReport | None:
        """The streamed analysis' first report; None if it has none (then the stored
        file is analysed). The file's own failure (AnalysisFailed) is final: the
        same bytes would fail the same way again."""
        try:
            report = await stages.first_or_final()
        except StreamAbandoned as reason:
            log.info("model %s: streamed analysis abandoned (%s); analysing the stored file",
                     model.id, reason)
            return None
        if report.file_size != model.file_size:  # never a report of other bytes
            log.warning("model %s: streamed analysis saw %d bytes, not %d",
                        model.id, report.file_size, model.file_size)
            return None
        return replace(report, file_name=model.file_name)

    async def _fetch_and_start(self, held: Claim) -> Stages | None:
        """Decrypt the stored file and start analysing it; None if the claim was lost."""
        model = held.model
        data = await self._retry(lambda: self._fetch(model))
        # The fetch may have taken a while: restart the lease, and skip the CPU
        # work if the model was deleted or taken over meanwhile.
        if not await self._retry(lambda: renew(held)):
            return None
        loop = asyncio.get_running_loop()
        first: asyncio.Future[MeshReport] = loop.create_future()

        def on_first(report: MeshReport) -> None:  # in the analysis thread
            loop.call_soon_threadsafe(_settle_once, first, report)

        final = asyncio.ensure_future(
            asyncio.to_thread(
                self._analyse,
                data,
                model.file_name,
                model.format,
                AnalysisOptions.from_settings(self.settings),
                float(self.settings.analysis_timeout_seconds),
                self.settings.analysis_memory_bytes,
                on_first,
            )
        )
        del data  # the thread holds it until the child has it all
        return Stages(first, final)

    async def _fetch(self, model: Model3D) -> bytearray:
        """The decrypted file, in memory only: plaintext never touches the disk.

        Filled into one buffer of the file's known size, so the peak is one copy
        of the file, not the segments plus their join."""
        data_key = unwrap(self.keyring, WrappedKey.from_str(model.wrapped_key))
        chunks = self.store.get(model.object_key)
        plain = decrypt_stream(chunks, data_key, associated=model.object_key.encode())
        buffer = bytearray(model.file_size)
        view, filled = memoryview(buffer), 0
        async for segment in plain:
            end = filled + len(segment)
            if end > len(buffer):
                raise AnalysisFailed("The stored file is larger than when it was uploaded.")
            view[filled:end] = segment
            filled = end
        if filled != len(buffer):
            raise AnalysisFailed("The stored file is smaller than when it was uploaded.")
        return buffer

    async def _settle_error(self, held: Claim, error: Exception) -> Outcome:
        model = held.model
        if is_transient(error):
            # After a first report the row is DONE and not released: the sweep finds
            # its checks pending past the lease and has it analysed again.
            log.warning("model %s: storage unavailable (%s); postponed", model.id, error)
            await self._retry(lambda: release(held))
            return Outcome.POSTPONED
        if await self._retry(lambda: _done_by(held).exists()):
            # After the first report: it stays (the checks' own failure is handled
            # in _complete); only the complete one could not be recorded.
            log.warning("model %s: checks not recorded (%s)", model.id, error)
            return Outcome.DROPPED
        if isinstance(error, AnalysisFailed):
            reason = error.reason
        elif isinstance(error, ObjectMissing):
            reason = MISSING_FILE
        else:
            log.error("model %s: unexpected error during analysis", model.id, exc_info=error)
            reason = INTERNAL_ERROR
        if not await self._retry(lambda: record_failed(held, reason)):
            # A model deleted meanwhile also loses its object: nothing to report.
            log.info("model %s: failed, but deleted or taken over meanwhile", model.id)
            return Outcome.DROPPED
        if isinstance(error, ObjectMissing):
            log.error("model %s: its stored object %s is missing", model.id, model.object_key)
        else:
            log.info("model %s: analysis failed: %s", model.id, reason)
        return Outcome.FAILED

    async def _retry(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run `step`, retrying transient errors with backoff; re-raise the last one."""
        policy = self.limits.retry
        for attempt in range(1, policy.max_attempts + 1):
            try:
                return await step()
            except Exception as error:
                if not is_transient(error) or attempt == policy.max_attempts:
                    raise
                delay = policy.delay(attempt)
                log.info("transient error (%s); retry %d in %.1fs", error, attempt, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: max_attempts must be at least 1")


def _streamed(early: StreamedAnalysis) -> Stages:
    return Stages(asyncio.wrap_future(early.first), asyncio.wrap_future(early.future))


def _settle_once(future: asyncio.Future[MeshReport], report: MeshReport) -> None:
    if not future.done():
        future.set_result(report)
