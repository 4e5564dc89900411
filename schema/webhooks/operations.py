"""Webhook queries and mutations: list, register (secret shown once), delete, replay."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from domain import webhook_endpoints
from runtime.webhook_delivery import WebhookSender
from schema.fields import guarded
from schema.webhooks.types import WebhookCreatedType, WebhookType


@strawberry.type
class Query:
    @guarded(description="The caller's company's endpoints (its admins), all of them (staff).")
    async def webhooks(self, info: Info) -> list[WebhookType]:
        rows = await webhook_endpoints.list_webhooks(info.context.access)
        return [WebhookType(row=row) for row in rows]


@strawberry.type
class Mutation:
    @guarded(
        description="Register an endpoint for some events (company admin; staff: every "
        "company's events). The URL must resolve to a public address."
    )
    async def create_webhook(
        self, info: Info, url: str, events: list[str]
    ) -> WebhookCreatedType:
        ctx = info.context
        sender = WebhookSender(allow_private=ctx.settings.webhook_allow_private_networks)
        created = await webhook_endpoints.create_webhook(
            ctx.access, ctx.settings.secret_key, url, events, sender.check_destination
        )
        if ctx.response is not None:  # the secret must not sit in any cache
            ctx.response.headers["Cache-Control"] = "no-store"
        return WebhookCreatedType(webhook=WebhookType(row=created.webhook), secret=created.secret)

    @guarded(description="Remove an endpoint and its delivery records.")
    async def delete_webhook(self, info: Info, id: strawberry.ID) -> bool:
        return await webhook_endpoints.delete_webhook(info.context.access, id)

    @guarded(description="Send an event again (same webhook-id), as a new try due now.")
    async def redeliver_webhook(self, info: Info, delivery_id: strawberry.ID) -> bool:
        ctx = info.context
        delivery = await webhook_endpoints.redeliver(ctx.access, delivery_id)
        if ctx.services is not None:
            await ctx.services.jobs.enqueue_deliveries([delivery.id])
        return True
