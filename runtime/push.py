"""What happens after a domain change is committed: live events, webhooks, e-mail notices.

One call per kind of change, made once the change is committed (never inside its
transaction: a subscriber that re-reads must find it). Each call
- publishes an event on the bus (topics `order:<id>`, `orders`, `model:<id>`): the
  message holds ids only; subscribers re-read the object and ask the policy,
- writes one PENDING WebhookDelivery per endpoint that reaches the object and asked for
  the event, and hands them to the job engine,
- enqueues e-mail notices (order status, new assignment) on the job engine.

Nothing here may fail the change that caused it: errors are logged and counted; a lost
event is at worst a webhook or live update that did not happen (docs/status.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from tortoise.timezone import now as utc_now

from domain import webhook_endpoints
from domain.enums import AnalysisStatus
from domain.orders import subject_of
from runtime.events import EventBus
from runtime.notices import NEW_ASSIGNMENT, ORDER_STATUS
from storage.models import Comment, Model3D, Order, OrderEvent

log = logging.getLogger("printvault.push")

ORDERS_TOPIC = "orders"  # every order event: what staff follow

# What the job engine offers this module (runtime/jobs.py JobQueue implements it).
EnqueueDeliveries = Callable[[Iterable[int]], Awaitable[None]]
EnqueueNotice = Callable[[str, UUID, str], Awaitable[None]]


def order_topic(order_id: UUID | str) -> str:
    return f"order:{order_id}"


def company_topic(company_id: UUID | str) -> str:
    """Every order event of one company's orders (as customer or as holding provider)."""
    return f"company:{company_id}"


def model_topic(model_id: UUID | str) -> str:
    return f"model:{model_id}"


class Push:
    def __init__(
        self,
        bus: EventBus | None,
        enqueue_deliveries: EnqueueDeliveries,
        enqueue_notice: EnqueueNotice,
    ) -> None:
        self.bus = bus
        self._deliveries = enqueue_deliveries
        self._notice = enqueue_notice
        self.failures = 0

    async def order_requested(self, order: Order) -> None:
        await self._order(order, "order.requested", None, {
            "orderId": order.id, "modelId": order.model_id, "companyId": order.company_id,
            "status": order.status,
        })

    async def order_assigned(self, order: Order) -> None:
        await self._order(order, "order.assigned", None, {
            "orderId": order.id, "providerId": order.provider_id, "status": order.status,
        })
        await self._safe(self._notice(NEW_ASSIGNMENT, order.id, str(order.status)))

    async def order_status_changed(self, order: Order, previous: str) -> None:
        await self._order(order, "order.status_changed", previous, {
            "orderId": order.id, "status": order.status, "previousStatus": previous,
        })
        await self._safe(self._notice(ORDER_STATUS, order.id, str(order.status)))

    async def analysis_finished(self, model_id: UUID) -> None:
        model = await Model3D.get_or_none(id=model_id)
        if model is None:
            return
        done = model.analysis_status == AnalysisStatus.DONE
        event = "model.analysis_done" if done else "model.analysis_failed"
        message = {"kind": "model", "modelId": str(model.id), "event": event}
        await self._publish([model_topic(model.id)], message)
        await self._webhooks(event, [model.company_id], {
            "modelId": model.id, "analysisStatus": model.analysis_status,
        })

    async def checks_finished(self, model_id: UUID) -> None:
        """The complete verdict replaced a first report (Printability.pendingChecks)."""
        model = await Model3D.get_or_none(id=model_id)
        if model is None or model.analysis_status != AnalysisStatus.DONE:
            return
        message = {"kind": "model", "modelId": str(model.id), "event": "model.checks_done"}
        await self._publish([model_topic(model.id)], message)
        await self._webhooks("model.checks_done", [model.company_id], {
            "modelId": model.id, "analysisStatus": model.analysis_status,
        })

    async def comment_added(self, comment: Comment, company_id: UUID) -> None:
        await self._webhooks("comment.added", [company_id], {
            "commentId": comment.id, "modelId": comment.model_id,
        })

    async def _order(
        self, order: Order, event: str, previous: str | None, data: dict[str, Any]
    ) -> None:
        latest = await OrderEvent.filter(order_id=order.id).order_by("-id").first()
        message = {
            "kind": "order", "orderId": str(order.id), "event": event,
            "eventId": latest.id if latest else 0,
        }
        # The companies that reach the order now: its customer and the holding provider.
        subject = subject_of(order)
        companies = [c for c in (subject.company_id, subject.provider_id) if c is not None]
        topics = [order_topic(order.id), ORDERS_TOPIC, *map(company_topic, companies)]
        await self._publish(topics, message)
        await self._webhooks(event, list(companies), data)

    async def _publish(self, topics: list[str], message: dict[str, Any]) -> None:
        if self.bus is None:
            return
        for topic in topics:
            await self._safe(self.bus.publish(topic, message))

    async def _webhooks(
        self, event: str, companies: list[UUID | None], data: dict[str, Any]
    ) -> None:
        occurred: datetime = utc_now()
        try:
            ids = await webhook_endpoints.fan_out(event, occurred, companies, **data)
        except Exception:
            self.failures += 1
            log.warning("webhook fan-out of %s failed", event, exc_info=True)
            return
        if ids:
            await self._safe(self._deliveries(ids))

    async def _safe(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception:
            self.failures += 1
            log.warning("push: a follow-up of a change failed", exc_info=True)
