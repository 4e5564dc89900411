"""Webhook types: Webhook, WebhookDelivery (one try) and WebhookCreated (secret shown once)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from domain import webhook_endpoints
from domain.pagination import DEFAULT_PAGE
from domain.policy import Subject
from schema.connections import Connection, connection_from_page
from schema.fields import from_row, guarded
from storage.models import Webhook, WebhookDelivery


@strawberry.type(name="WebhookDelivery", description="One try of one event at one endpoint.")
class WebhookDeliveryType:
    row: strawberry.Private[WebhookDelivery]
    hook: strawberry.Private[Webhook]

    def policy_subject(self) -> Subject:
        # A try is part of its endpoint: whoever reaches the webhook reaches its tries.
        return webhook_endpoints.subject_of(self.hook)

    @guarded()
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    event: str = from_row("event")
    attempt: int = from_row("attempt")

    @guarded(description="PENDING, DELIVERED, FAILED, GONE (410: endpoint disabled) or CANCELLED.")
    def status(self) -> str:
        return self.row.status

    @guarded(description="The receiver's HTTP status; null when it never answered.")
    def response_code(self) -> int | None:
        return self.row.response_code

    @guarded(description="When the try was made (for a PENDING try: when it was scheduled).")
    def at(self) -> datetime:
        return self.row.at


@strawberry.type(name="Webhook")
class WebhookType:
    row: strawberry.Private[Webhook]

    def policy_subject(self) -> Subject:
        return webhook_endpoints.subject_of(self.row)

    @guarded()
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    url: str = from_row("url")

    @guarded()
    def events(self) -> list[str]:
        return list(self.row.events)

    active: bool = from_row("active")
    created_at: datetime = from_row("created_at")

    @guarded(description="Its tries, newest first.")
    async def deliveries(
        self, info: Info, first: int | None = DEFAULT_PAGE, after: str | None = None
    ) -> Connection[WebhookDeliveryType]:
        page = await webhook_endpoints.deliveries_page(self.row, first, after)
        return connection_from_page(page, lambda d: WebhookDeliveryType(row=d, hook=self.row))


@strawberry.type(name="WebhookCreated")
class WebhookCreatedType:
    webhook: WebhookType = guarded()
    secret: str = guarded(description='The signing secret, "whsec_...": shown this once only.')
