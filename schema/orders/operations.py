"""Order queries and mutations: request, assign, move through the state machine."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.types import Info

from domain import orders
from domain.ids import uuid_or_nil
from domain.lookups import or_none
from domain.pagination import DEFAULT_PAGE
from runtime.push import ORDERS_TOPIC, company_topic, order_topic
from schema.connections import Connection, connection_from_page
from schema.fields import guarded, guarded_subscription
from schema.live import events_on
from schema.orders.types import OrderEventType, OrderInput, OrderStatusEnum, OrderType


@strawberry.type
class Query:
    @guarded(description="Null when the order does not exist or is not yours to see.")
    async def order(self, info: Info, id: strawberry.ID) -> OrderType | None:
        row = await or_none(orders.find_order(info.context.access, id))
        return OrderType(row=row) if row else None

    @guarded(
        description="The orders the caller may see, newest first: a customer its company's, "
        "a provider those assigned to it and still open, staff all."
    )
    async def orders(
        self,
        info: Info,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
        status: OrderStatusEnum | None = None,
    ) -> Connection[OrderType]:
        page = await orders.list_orders(info.context.access, first, after, status)
        return connection_from_page(page, lambda row: OrderType(row=row))


@strawberry.type
class Mutation:
    @guarded(description="A print request for one of your company's models.")
    async def request_order(self, info: Info, input: OrderInput) -> OrderType:
        ctx = info.context
        await ctx.services.limiter.hit("order_request_user", ctx.viewer.user_id)
        request = orders.OrderRequest(
            model_id=input.model_id,
            quantity=input.quantity,
            material=input.material,
            shipping_address=input.shipping_address.to_dict(),
            billing_address=input.billing_address.to_dict(),
            billing_info=input.billing_info,
            quote_id=input.quote_id,
        )
        services = ctx.services
        row = await orders.request_order(
            ctx.access, services.keyring, request, ctx.ip, services.jobs.enqueue_analysis
        )
        if ctx.push is not None:
            await ctx.push.order_requested(row)
        return OrderType(row=row)

    @guarded(description="Hand an order to a print service, or to another one (staff).")
    async def assign_order(
        self, info: Info, order_id: strawberry.ID, provider_company_id: strawberry.ID
    ) -> OrderType:
        ctx = info.context
        await ctx.services.limiter.hit("order_step_user", ctx.viewer.user_id)
        row = await orders.assign_order(ctx.access, order_id, provider_company_id, ctx.ip)
        if ctx.push is not None:
            await ctx.push.order_assigned(row)
        return OrderType(row=row)

    @guarded(description="One step of the order state machine; see Order.nextSteps.")
    async def update_order_status(
        self, info: Info, order_id: strawberry.ID, status: OrderStatusEnum, note: str | None = None
    ) -> OrderType:
        ctx = info.context
        await ctx.services.limiter.hit("order_step_user", ctx.viewer.user_id)
        row, previous = await orders.update_status(ctx.access, order_id, status, note, ctx.ip)
        if ctx.push is not None:
            await ctx.push.order_status_changed(row, previous)
        return OrderType(row=row)


def _all_mine(ctx: Any) -> str:
    """The topic of every order event the caller may see: staff all, others their
    company's (each event is still checked against the policy when it is sent)."""
    if ctx.viewer.role == "STAFF":
        return ORDERS_TOPIC
    return company_topic(ctx.viewer.company_id or uuid_or_nil(None))


@strawberry.type
class Subscription:
    @guarded_subscription(
        description="Each new step of one order, or of every order the caller may see. "
        "An order the caller does not reach yields nothing (it is not refused: no probing)."
    )
    async def order_events(
        self, info: Info, order_id: strawberry.ID | None = None
    ) -> AsyncGenerator[OrderEventType, None]:
        ctx = info.context
        topic = order_topic(uuid_or_nil(order_id)) if order_id is not None else _all_mine(ctx)
        async for message in events_on(ctx, topic):
            found = await orders.live_event(ctx.access, message)
            if found is not None:
                order, event = found
                yield OrderEventType(row=event, order_subject=orders.subject_of(order))
