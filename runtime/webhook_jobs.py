"""Webhook delivery as a job: claim a due try, send it, record it, schedule the next.

The `WebhookDelivery` row, not the queue, says what is left to do (like the analysis
job's `Model3D` row): a PENDING row is due at `next_attempt_at`. A worker claims it with a
conditional update that sets `lease_until`; a worker killed mid-try leaves the lease to
run out, and the recovery sweep (`due()`) hands the row out again. The lease is longer than
a try can last (the sender's total timeout), so two workers never send the same try at
once; a duplicate after a crash carries the same `webhook-id`, which receivers dedupe on.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from tortoise.expressions import Q
from tortoise.timezone import now as utc_now
from tortoise.transactions import in_transaction

from domain.webhook_endpoints import CANCELLED, PENDING, unseal_secret
from domain.webhooks import Decision
from runtime.webhook_delivery import Timeouts, WebhookSender, deliver_once
from storage.models import Webhook, WebhookDelivery

log = logging.getLogger("printvault.webhooks")

LEASE_MARGIN_S = 20.0


class WebhookJobs:
    def __init__(
        self,
        secret_key: bytes,
        allow_private: bool,
        timeouts: Timeouts | None = None,
        sender: WebhookSender | None = None,
        lease_margin_s: float = LEASE_MARGIN_S,
    ) -> None:
        self.secret_key = secret_key
        self.sender = sender or WebhookSender(allow_private=allow_private, timeouts=timeouts)
        self.lease_s = self.sender.timeouts.total + lease_margin_s

    def _claimable(self) -> Q:
        now = utc_now()
        return Q(status=PENDING, next_attempt_at__lte=now) & (
            Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        )

    async def due(self, limit: int = 200) -> list[int]:
        """Tries that are due and held by nobody (new, retries, or a dead worker's)."""
        rows = await WebhookDelivery.filter(self._claimable()).order_by("id").limit(limit)
        return [row.id for row in rows]

    async def run(self, delivery_id: int) -> int | None:
        """One try of a delivery row; returns the id of the next try, if one is scheduled."""
        lease_until = utc_now() + timedelta(seconds=self.lease_s)
        claimed = await WebhookDelivery.filter(self._claimable(), id=delivery_id).update(
            lease_until=lease_until
        )
        if not claimed:
            return None  # done, not due, or another worker holds it
        delivery = await WebhookDelivery.get(id=delivery_id)
        hook = await Webhook.get_or_none(id=delivery.webhook_id)
        if hook is None or not hook.active:
            await WebhookDelivery.filter(id=delivery_id).update(
                status=CANCELLED, lease_until=None
            )
            return None
        secret = unseal_secret(self.secret_key, hook.secret_sealed)
        tried = await deliver_once(
            self.sender, hook.url, secret, delivery.message_id, delivery.body.encode(),
            delivery.attempt,
        )
        return await self._record(delivery, tried.attempt.status_code, tried.attempt.error,
                                  tried.decision)

    async def _record(
        self, delivery: WebhookDelivery, code: int | None, error: str | None, decision: Decision
    ) -> int | None:
        now = utc_now()
        async with in_transaction():
            # Only the holder of a live lease records: a worker that overran its lease
            # (its try was handed out again) must not write a second outcome.
            recorded = await WebhookDelivery.filter(
                id=delivery.id, status=PENDING, lease_until__gte=now
            ).update(
                status=str(decision.outcome), response_code=code, error=error, at=now,
                lease_until=None,
            )
            if not recorded:
                return None
            if decision.disable_endpoint:
                await Webhook.filter(id=delivery.webhook_id).update(active=False)
                log.info("webhook %s answered 410 and was disabled", delivery.webhook_id)
            if decision.retry_in_s is None:
                return None
            following = await WebhookDelivery.create(
                webhook_id=delivery.webhook_id,
                message_id=delivery.message_id,
                event=delivery.event,
                body=delivery.body,
                attempt=delivery.attempt + 1,
                status=PENDING,
                next_attempt_at=now + timedelta(seconds=decision.retry_in_s),
            )
        return following.id
