"""The job queue: analysis jobs on taskiq, in-process or on Redis workers.

- Embedded default (`JOB_BROKER_URL` empty): taskiq's InMemoryBroker runs each
  job as an asyncio task of the server process; the CPU work itself runs in
  the analysis child process, reached through a thread, so the event loop
  never blocks. The server also runs the recovery sweep.
- Production (`JOB_BROKER_URL=redis://...`): the server only publishes to a
  Redis stream; `run_worker` processes (`server.py worker`, on any machine
  that reaches the database, the store and Redis) consume it. A message is
  acknowledged only after its job ran, so one held by a worker that died
  stays pending, and a worker claims it (XAUTOCLAIM) once it has been idle
  for a lease. taskiq-redis only looks for such messages after reading a new
  one, so on a quiet queue it is the sweep's re-queued message that wakes it.

Either way the `Model3D` row, not the queue, says what is left to do
(domain/analysis_job.py): a message may be lost or duplicated, and the
recovery sweep re-queues rows whose job went missing. See
docs/decisions/0001-job-engine.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import signal
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from redis.exceptions import RedisError
from taskiq import AsyncBroker, InMemoryBroker
from taskiq.acks import AcknowledgeType
from taskiq.exceptions import SendTaskError
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker
from tortoise.timezone import now as utc_now

from domain import account_mail, maintenance
from domain.analysis.sandbox import StreamedAnalysis
from domain.analysis_job import (
    AnalysisJob,
    JobLimits,
    Outcome,
    reopen,
    stranded,
    stranded_checks,
)
from domain.enums import AnalysisStatus
from domain.preview_job import PreviewJob, without_preview
from runtime import notices
from runtime.events import EventBus
from runtime.mailer import Mailer, MailError
from runtime.push import Push
from runtime.settings import Settings, SettingsError
from runtime.webhook_delivery import Timeouts
from runtime.webhook_jobs import WebhookJobs
from storage import db
from storage.crypto import KeyRing
from storage.models import Model3D, WebhookDelivery
from storage.objects import ObjectStore

log = logging.getLogger("printvault.jobs")

TASK_NAME = "printvault.analyse_model"
WEBHOOK_TASK = "printvault.deliver_webhook"
NOTICE_TASK = "printvault.send_notice"
MAIL_TASK_NAME = "printvault.account_mail"
PREVIEW_TASK_NAME = "printvault.preview_model"
DEFAULT_QUEUE = "printvault:analysis"
CONSUMER_GROUP = "printvault-workers"


@dataclass(frozen=True)
class JobOptions:
    queue_name: str = DEFAULT_QUEUE  # the Redis stream
    # Analyses at once in one process: each is a child process on its own core.
    concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    limits: JobLimits = field(default_factory=JobLimits)
    # A PENDING row is re-queued when nothing claimed it for this long.
    pending_grace_s: float = 60.0
    sweep_interval_s: float = 30.0
    sweep_batch: int = 200
    # The stream is trimmed to about this many entries (Redis keeps acked ones).
    stream_max_len: int = 100_000
    # One webhook try, all phases together; its lease adds a margin (runtime/webhook_jobs.py).
    webhook_timeouts: Timeouts = field(default_factory=Timeouts)
    webhook_lease_margin_s: float = 20.0
    # Webhook tries at once in one process (each waits on the network, not the CPU): a
    # burst of events queues here instead of opening thousands of connections.
    webhook_concurrency: int = 32
    # Waits between tries of a mail the SMTP server did not take (about 3 h in all).
    mail_retry_delays_s: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0, 7200.0)


class JobQueue:
    """Enqueue analyses; in the embedded default, also run them.

    `start()`/`stop()` bracket its use. `consume()` is for worker processes.
    """

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        keyring: KeyRing,
        options: JobOptions | None = None,
        mailer: Mailer | None = None,
        *,
        bus: EventBus | None = None,
    ) -> None:
        self.options = options or JobOptions(queue_name=settings.job_queue)
        self.mailer = mailer
        self.settings, self.store, self.keyring = settings, store, keyring
        self.job = AnalysisJob(settings, store, keyring, self.options.limits)
        self.webhooks = WebhookJobs(
            settings.secret_key,
            settings.webhook_allow_private_networks,
            self.options.webhook_timeouts,
            lease_margin_s=self.options.webhook_lease_margin_s,
        )
        self.push = Push(bus, self.enqueue_deliveries, self.enqueue_notice)
        self._broker = _make_broker(settings, self.options, self.job.lease_s)
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._webhook_slots = asyncio.Semaphore(self.options.webhook_concurrency)
        self._sweeper: asyncio.Task[None] | None = None
        # Tasks of this process to cancel on stop: in-process jobs and kicks.
        self._tasks: set[asyncio.Task[object]] = set()
        # Jobs start from the context of start(), not of whoever enqueued them:
        # an in-process job must not inherit a request's open transaction.
        self._context = contextvars.copy_context()

        async def analyse_model(model_id: str) -> None:
            with self._tracked():
                async with self._slots:
                    first = _FirstAnnounced(self, UUID(model_id))
                    outcome = await self.job.run(UUID(model_id), None, first)
            await self._analysis_settled(UUID(model_id), outcome, first.announced)

        async def deliver_webhook(delivery_id: int) -> None:
            with self._tracked():
                async with self._webhook_slots:  # claimed only once a slot is free
                    following = await self.webhooks.run(int(delivery_id))
            if following is not None and self.in_process:
                # In one process the next try waits in a timer; with workers, the sweep
                # finds it when it is due (the row says when).
                self._later(following)

        async def send_notice(kind: str, order_id: str, status: str) -> None:
            with self._tracked():
                await notices.send(self.mailer, kind, UUID(order_id), status)

        self._task = self._broker.register_task(analyse_model, task_name=TASK_NAME)
        self._webhook_task = self._broker.register_task(deliver_webhook, task_name=WEBHOOK_TASK)
        self._notice_task = self._broker.register_task(send_notice, task_name=NOTICE_TASK)
        self.previews = PreviewJob(settings, store, keyring)

        async def preview_model(model_id: str) -> None:
            with self._tracked():
                async with self._slots:
                    await self.previews.run(UUID(model_id))

        self._preview_task = self._broker.register_task(
            preview_model, task_name=PREVIEW_TASK_NAME
        )

        async def account_mail(sealed: str) -> None:
            with self._tracked():
                await self._deliver_mail(sealed)

        self._mail_task = self._broker.register_task(account_mail, task_name=MAIL_TASK_NAME)

    @property
    def in_process(self) -> bool:
        return isinstance(self._broker, InMemoryBroker)

    async def start(self) -> None:
        self._context = contextvars.copy_context()
        if self.in_process:
            await self._broker.startup()
            self._sweeper = asyncio.create_task(self._sweep_forever())
            return
        try:
            await self._broker.startup()
        except (RedisError, OSError) as error:
            # The API must not go down with Redis: enqueueing is best effort,
            # and the workers' sweep re-queues what could not be published.
            log.warning("job broker unreachable at start-up (%s)", error)

    async def stop(self) -> None:
        """Stop sweeping and cancel in-process jobs; their rows are recovered later."""
        tasks = [*self._tasks, *([self._sweeper] if self._sweeper else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._sweeper = None
        await self._broker.shutdown()

    async def enqueue_analysis(
        self, model_id: UUID, early: StreamedAnalysis | None = None
    ) -> None:
        """Ask for the model to be analysed. Call it after the row is committed.

        Never raises for an unreachable broker: the row stays PENDING and the
        recovery sweep enqueues it again.

        With `early` (the analysis that watched the upload stream in, running in
        this process's child) the job runs here, whatever the broker: it claims
        the row like any job and records that result; nothing is published, so
        no worker fetches the file again. Should this process die first, the
        row is stranded PENDING or RUNNING and the sweep re-queues it.
        """
        if early is not None:
            self._spawn(self._run_early(model_id, early))
            return
        if self.in_process:
            self._spawn(self._kick(model_id))
            return
        await self._kick(model_id)

    async def enqueue_deliveries(self, delivery_ids: Iterable[int]) -> None:
        """Hand webhook tries to the engine; a lost message is found again by the sweep."""
        for delivery_id in delivery_ids:
            await self._send(self._webhook_task, delivery_id=delivery_id)

    async def enqueue_notice(self, kind: str, order_id: UUID, status: str) -> None:
        await self._send(self._notice_task, kind=kind, order_id=str(order_id), status=status)

    async def _send(self, task: Any, **kwargs: Any) -> None:
        async def kick() -> None:
            try:
                await task.kiq(**kwargs)
            except SendTaskError as error:
                log.warning("could not enqueue %s (%s)", task.task_name, error.__cause__ or error)

        if self.in_process:
            self._spawn(kick())
        else:
            await kick()

    def _later(self, delivery_id: int) -> None:
        async def wait_then_send() -> None:
            row = await WebhookDelivery.get_or_none(id=delivery_id)
            if row is None or row.next_attempt_at is None:
                return
            await asyncio.sleep(max(0.0, (row.next_attempt_at - utc_now()).total_seconds()))
            await self.enqueue_deliveries([delivery_id])

        self._spawn(wait_then_send())

    async def sweep_webhooks(self) -> list[int]:
        """Due webhook tries nobody holds: retries whose time came, a dead worker's try."""
        due = await self.webhooks.due(self.options.sweep_batch)
        await self.enqueue_deliveries(due)
        return due

    async def enqueue_mail(self, sealed: str) -> None:
        """Queue an account mail (domain/account_mail.py); never raises for the broker."""
        if self.in_process:
            self._spawn(self._kick_mail(sealed))
            return
        await self._kick_mail(sealed)

    async def _kick_mail(self, sealed: str) -> None:
        try:
            await self._mail_task.kiq(sealed=sealed)
        except SendTaskError as error:
            log.warning("could not enqueue a mail (%s)", error.__cause__ or error)

    async def _deliver_mail(self, sealed: str) -> None:
        """Prepare once, then try to send, waiting between tries while it may help."""
        delivery = account_mail.Delivery(self.settings, sealed)
        if self.mailer is None:
            log.info("mail %s not sent: mail is off (SMTP_URL unset)", delivery.kind)
            return
        if not await delivery.prepare():
            return
        delays = self.options.mail_retry_delays_s
        for attempt in range(len(delays) + 1):
            if not await delivery.still_wanted():
                log.info("mail %s dropped: no longer wanted", delivery.kind)
                return
            try:
                await delivery.send(self.mailer)
                return
            except MailError as error:
                if not error.retryable or attempt == len(delays):
                    log.warning("mail %s given up: %s", delivery.kind, error)
                    return
                log.info("mail %s try %d failed (%s); retrying", delivery.kind, attempt + 1, error)
                await asyncio.sleep(delays[attempt])

    async def enqueue_preview(self, model_id: UUID) -> None:
        """Ask for the previews of an analysed model; best effort like analyses
        (a lost message is found again by the sweep: DONE and no preview row)."""
        if self.in_process:
            self._spawn(self._kick(model_id, self._preview_task))
            return
        await self._kick(model_id, self._preview_task)

    async def consume(self, stop: asyncio.Event) -> None:
        """Run jobs from the broker and the recovery sweep until `stop` is set."""
        self._broker.is_worker_process = True
        sweeper = asyncio.create_task(self._sweep_forever())
        try:
            await self._listen_until(stop)
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)

    async def sweep(self) -> list[UUID]:
        """Re-queue models whose job was lost; returns their ids."""
        now = utc_now()
        rule = stranded(now, self.job.lease_s, self.options.pending_grace_s)
        candidates = (
            await Model3D.filter(rule)
            .order_by("created_at")
            .limit(self.options.sweep_batch)
            .values_list("id", "analysis_attempts")
        )
        requeued = []
        for model_id, attempts in candidates:
            # Conditional, like a claim: of several sweepers, one re-queues a row,
            # and the new lease start keeps it from being re-queued again at once.
            taken = await Model3D.filter(rule, id=model_id, analysis_attempts=attempts).update(
                analysis_status=AnalysisStatus.PENDING, analysis_started_at=now
            )
            if taken:
                await self.enqueue_analysis(model_id)
                requeued.append(model_id)
        # DONE, but the process running its wall check died: analysed again whole.
        for model_id, token in await stranded_checks(
            now, self.job.lease_s, self.options.sweep_batch
        ):
            if await reopen(model_id, token, now):
                await self.enqueue_analysis(model_id)
                requeued.append(model_id)
        if requeued:
            log.info("recovery sweep re-queued %d model(s)", len(requeued))
        if self.settings.previews:
            await self._sweep_previews(now)
        return requeued

    async def _sweep_previews(self, now: datetime) -> None:
        lease_s = self.settings.preview_timeout_seconds + self.options.pending_grace_s
        for model_id in await without_preview(now, lease_s, self.options.sweep_batch):
            await self.enqueue_preview(model_id)

    async def _run_early(self, model_id: UUID, early: StreamedAnalysis) -> None:
        # No slot: the analysis already runs in its own child, outside the
        # job engine's concurrency; only a fallback to the stored file would
        # add work, and it is rare (the stream was abandoned).
        first = _FirstAnnounced(self, model_id)
        try:
            outcome = await self.job.run(model_id, early, first)
        finally:
            early.abort()  # unclaimed (e.g. deleted at once): stop the child
        await self._analysis_settled(model_id, outcome, first.announced)

    async def _analysis_settled(
        self, model_id: UUID, outcome: Outcome, announced: bool = False
    ) -> None:
        """After an analysis ends, by the job or the streamed child: preview, events.
        `announced`: its first report was settled as DONE already (`_FirstAnnounced`)."""
        if announced:
            if outcome is Outcome.DONE:
                await self.push.checks_finished(model_id)
            return
        if outcome is Outcome.DONE and self.settings.previews:
            await self.enqueue_preview(model_id)
        if outcome in (Outcome.DONE, Outcome.FAILED):
            await self.push.analysis_finished(model_id)

    async def _kick(self, model_id: UUID, task: Any = None) -> None:
        try:
            await (task or self._task).kiq(model_id=str(model_id))
        except SendTaskError as error:
            cause = error.__cause__ or error
            log.warning("could not enqueue model %s (%s); the sweep will retry", model_id, cause)

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coroutine, context=self._context.copy())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
                await self.sweep_webhooks()
                await maintenance.run_due(self.settings, self.store, self.keyring)
            except Exception:  # the database may be down: try again next round
                log.warning("recovery sweep failed", exc_info=True)
            await asyncio.sleep(self.options.sweep_interval_s)

    async def _listen_until(self, stop: asyncio.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            try:
                # startup() (re)declares the consumer group, e.g. after Redis lost it.
                await self._broker.startup()
                await self._receiver().listen(stop)
                delay = 1.0
            except Exception:
                log.warning("job broker unavailable; retrying in %.0fs", delay, exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)

    def _receiver(self) -> Receiver:
        return Receiver(
            broker=self._broker,
            max_async_tasks=self.options.concurrency,
            # Take no more messages than can run, so idle workers get the rest.
            max_prefetch=0,
            run_startup=False,
            # Acknowledge after the job ran: a worker's death leaves it pending.
            ack_type=AcknowledgeType.WHEN_EXECUTED,
            wait_tasks_timeout=self.job.lease_s,
        )


def _make_broker(settings: Settings, options: JobOptions, lease_s: float) -> AsyncBroker:
    url = settings.job_broker_url
    if not url:
        return InMemoryBroker(sync_tasks_pool_size=1, max_stored_results=1)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("JOB_BROKER_URL must be a redis:// or rediss:// URL")
    return RedisStreamBroker(
        url,
        queue_name=options.queue_name,
        consumer_group_name=CONSUMER_GROUP,
        # A new group reads what was queued before any worker existed.
        consumer_id="0",
        maxlen=options.stream_max_len,
        # A message unacknowledged for a whole lease belongs to a dead worker.
        idle_timeout=int(lease_s * 1000),
        xread_count=1,
        unacknowledged_batch_size=1,
        unacknowledged_lock_timeout=10,
        # An unreachable Redis must not hang an upload; reads block for 2 s at most.
        socket_connect_timeout=5,
        socket_timeout=15,
    )


async def run_worker(
    settings: Settings,
    *,
    options: JobOptions | None = None,
    store: ObjectStore | None = None,
) -> None:
    """A worker process: run analysis jobs until SIGTERM/SIGINT or cancellation."""
    if not settings.job_broker_url:
        raise SettingsError(
            "the worker needs JOB_BROKER_URL (redis://...); "
            "without it the server runs analysis jobs itself"
        )
    from runtime.events import make_event_bus
    from runtime.services import (  # services imports us
        key_ring,
        mailer_for,
        object_store,
        sealing_keys,
    )

    store = store or object_store(settings)
    keyring = key_ring(settings)
    bus = make_event_bus(settings.redis_url)
    queue = JobQueue(settings, store, keyring, options, mailer_for(settings), bus=bus)
    # Migrations are the server's (or `server.py migrate`'s) job, not the worker's.
    await db.connect(settings.database_url, sealing_keys(settings), apply_migrations=False)
    stop = asyncio.Event()
    try:
        with _stop_on_signals(stop):
            log.info("analysis worker started (queue %s)", queue.options.queue_name)
            await queue.consume(stop)
    finally:
        await queue.stop()
        await bus.close()
        await store.close()
        await db.disconnect()
        log.info("analysis worker stopped")


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """A graceful stop on SIGTERM/SIGINT: take no new jobs, let running ones finish."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


class _FirstAnnounced:
    """The job's `on_first_done`: DONE was recorded before the wall check, so the
    preview and the analysis_done events go out now, not when the check ends."""

    def __init__(self, queue: JobQueue, model_id: UUID) -> None:
        self.queue, self.model_id, self.announced = queue, model_id, False

    async def __call__(self) -> None:
        self.announced = True
        await self.queue._analysis_settled(self.model_id, Outcome.DONE)
