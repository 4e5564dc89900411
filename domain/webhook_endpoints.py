"""Webhook endpoints and their deliveries: register, list, delete, replay, fan out events.

The rules themselves (event names, thin bodies, signing, retries, URL syntax) are
domain/webhooks.py; the network is runtime/webhook_delivery.py; who may do what is the
policy table. An endpoint belongs to a company (its admins manage it) or, registered by
staff, to the platform (it receives every event).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from tortoise.expressions import Q
from tortoise.timezone import now as utc_now
from tortoise.transactions import in_transaction

from domain import audit, webhooks
from domain.errors import BadUserInput, NotFound
from domain.ids import parse_id
from domain.lookups import authorized
from domain.pagination import Page, check_first
from domain.policy import Access, Subject, reach_filter
from domain.secrets_box import seal, unseal
from storage.models import Webhook, WebhookDelivery

_SEAL_PURPOSE = b"webhook-secret"
PENDING = "PENDING"
CANCELLED = "CANCELLED"  # the endpoint was disabled before the try

# Checks where a URL resolves (the SSRF guard); runtime/webhook_delivery.py provides it.
DestinationCheck = Callable[[str], Awaitable[object]]


def subject_of(hook: Webhook) -> Subject:
    return Subject("Webhook", hook.id, company_id=hook.company_id)


def seal_secret(secret_key: bytes, secret: str) -> str:
    return seal(secret_key, _SEAL_PURPOSE, secret)


def unseal_secret(secret_key: bytes, sealed: str) -> str:
    return unseal(secret_key, _SEAL_PURPOSE, sealed)


@dataclass(frozen=True)
class Created:
    webhook: Webhook
    secret: str  # shown once, never stored in clear


async def create_webhook(
    access: Access,
    secret_key: bytes,
    url: str,
    events: Iterable[str],
    check_destination: DestinationCheck,
) -> Created:
    """A company admin registers an endpoint for its company; staff, one for every event."""
    viewer = access.viewer
    chosen = webhooks.validate_events(events)
    url = webhooks.validate_url(url.strip() if isinstance(url, str) else url)
    await check_destination(url)  # refuses internal addresses now; re-checked on every try
    company_id = None if viewer.role == "STAFF" else viewer.company_id
    secret = webhooks.new_secret()
    async with in_transaction():
        webhooks.check_quota(await Webhook.filter(company_id=company_id).count())
        hook = await Webhook.create(
            company_id=company_id,
            url=url,
            events=list(chosen),
            secret_sealed=seal_secret(secret_key, secret),
            created_by_id=viewer.user_id,
        )
        await audit.record(
            "webhook.created",
            actor_id=viewer.user_id,
            company_id=company_id,
            ip=access.ip,
            webhook_id=hook.id,
            events=list(chosen),
        )
    return Created(hook, secret)


async def delete_webhook(access: Access, webhook_id: object) -> bool:
    hook = await authorized(access, "Mutation.deleteWebhook", Webhook, webhook_id, subject_of)
    async with in_transaction():
        await hook.delete()  # its deliveries go with it (cascade)
        await audit.record(
            "webhook.deleted",
            actor_id=access.viewer.user_id,
            company_id=hook.company_id,
            ip=access.ip,
            webhook_id=hook.id,
        )
    return True


async def list_webhooks(access: Access) -> list[Webhook]:
    return (
        await Webhook.filter(reach_filter("Webhook", access.viewer))
        .order_by("-created_at", "-id")
        .limit(webhooks.MAX_WEBHOOKS_PER_COMPANY * 50)
    )


async def redeliver(access: Access, delivery_id: object) -> WebhookDelivery:
    """Replay one event: a new try with the same `webhook-id` and body, due now."""
    delivery = await _delivery(delivery_id)
    hook = await Webhook.get(id=delivery.webhook_id)
    await access.authorize("Mutation.redeliverWebhook", subject_of(hook))
    if not hook.active:
        raise BadUserInput("This webhook is disabled; register it again.", field="deliveryId")
    last = (
        await WebhookDelivery.filter(message_id=delivery.message_id, webhook_id=hook.id)
        .order_by("-attempt")
        .first()
    )
    attempt = (last.attempt if last else delivery.attempt) + 1
    return await WebhookDelivery.create(
        webhook_id=hook.id,
        message_id=delivery.message_id,
        event=delivery.event,
        body=delivery.body,
        attempt=attempt,
        status=PENDING,
        next_attempt_at=utc_now(),
    )


async def _delivery(delivery_id: object) -> WebhookDelivery:
    text = str(delivery_id)
    # Row ids are positive 64-bit integers; anything else names no delivery (and must
    # not reach the database as an out-of-range number).
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not 0 < int(text) < 2**63:
        raise NotFound("WebhookDelivery not found.")
    delivery = await WebhookDelivery.get_or_none(id=int(text))
    if delivery is None:
        raise NotFound("WebhookDelivery not found.")
    return delivery


async def deliveries_page(
    hook: Webhook, first: int | None, after: str | None
) -> Page[WebhookDelivery]:
    """The endpoint's tries, newest first (keyset on the row id)."""
    first = check_first(first)
    query = WebhookDelivery.filter(webhook_id=hook.id)
    if after:
        query = query.filter(id__lt=_decode(after))
    rows = await query.order_by("-id").limit(first + 1)
    items = rows[:first]
    return Page(
        items=items,
        cursors=[base64.urlsafe_b64encode(str(row.id).encode()).decode() for row in items],
        has_next_page=len(rows) > first,
    )


def _decode(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadUserInput("The cursor is not valid.", field="after") from None


async def fan_out(
    event: str, occurred_at: datetime, companies: Iterable[UUID | None], **data: Any
) -> list[int]:
    """One PENDING delivery per active endpoint that subscribed to `event` and belongs to
    one of `companies` (the ones that reach the object) or to the platform.

    Returns the delivery ids, for the job engine to try at once.
    """
    owners = {company for company in companies if company is not None}
    hooks = await Webhook.filter(
        Q(company_id__in=list(owners)) | Q(company_id__isnull=True), active=True
    )
    body = webhooks.encode_body(webhooks.build_payload(event, occurred_at, **data)).decode()
    created = []
    for hook in hooks:
        if event not in hook.events:
            continue
        delivery = await WebhookDelivery.create(
            webhook_id=hook.id,
            message_id=webhooks.new_message_id(),
            event=event,
            body=body,
            attempt=1,
            status=PENDING,
            next_attempt_at=occurred_at,
        )
        created.append(delivery.id)
    return created


async def webhook_of(hook_id: UUID) -> Webhook | None:
    return await Webhook.get_or_none(id=hook_id)


def parse_webhook_id(value: object) -> UUID:
    return parse_id(value, "Webhook")
