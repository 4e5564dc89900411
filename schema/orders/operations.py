"""Order queries and mutations: request, assign, move through the state machine."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from domain import orders
from domain.lookups import or_none
from domain.pagination import DEFAULT_PAGE
from schema.connections import Connection, connection_from_page
from schema.fields import guarded
from schema.orders.types import OrderInput, OrderStatusEnum, OrderType


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
        request = orders.OrderRequest(
            model_id=input.model_id,
            quantity=input.quantity,
            material=input.material,
            shipping_address=input.shipping_address.to_dict(),
            billing_address=input.billing_address.to_dict(),
            billing_info=input.billing_info,
        )
        row = await orders.request_order(ctx.access, ctx.settings.materials, request, ctx.ip)
        return OrderType(row=row)

    @guarded(description="Hand an order to a print service, or to another one (staff).")
    async def assign_order(
        self, info: Info, order_id: strawberry.ID, provider_company_id: strawberry.ID
    ) -> OrderType:
        ctx = info.context
        row = await orders.assign_order(ctx.access, order_id, provider_company_id, ctx.ip)
        return OrderType(row=row)

    @guarded(description="One step of the order state machine; see Order.nextSteps.")
    async def update_order_status(
        self, info: Info, order_id: strawberry.ID, status: OrderStatusEnum, note: str | None = None
    ) -> OrderType:
        ctx = info.context
        row = await orders.update_status(ctx.access, order_id, status, note, ctx.ip)
        return OrderType(row=row)
