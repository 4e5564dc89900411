"""Resolvers of order operations and of the audit log: read arguments, call the domain."""

from __future__ import annotations

from strawberry.types import Info

from domain import audit_log, orders
from domain.enums import OrderStatus
from domain.errors import NotFound
from schema.connections import Connection, connection_from_page
from schema.order_types import AuditEventType, OrderInput, OrderType


async def order(info: Info, order_id: str) -> OrderType | None:
    """Null for orders that do not exist or that the caller may not reach: ids cannot be probed."""
    try:
        row = await orders.find_order(info.context.access, order_id)
    except NotFound:
        return None
    return OrderType(row=row)


async def list_orders(
    info: Info, first: int | None, after: str | None, status: OrderStatus | None
) -> Connection[OrderType]:
    page = await orders.list_orders(info.context.access, first, after, status)
    return connection_from_page(page, lambda row: OrderType(row=row))


async def request_order(info: Info, data: OrderInput) -> OrderType:
    ctx = info.context
    request = orders.OrderRequest(
        model_id=data.model_id,
        quantity=data.quantity,
        material=data.material,
        shipping_address=data.shipping_address.to_dict(),
        billing_address=data.billing_address.to_dict(),
        billing_info=data.billing_info,
    )
    row = await orders.request_order(ctx.access, ctx.settings.materials, request, ctx.ip)
    return OrderType(row=row)


async def assign_order(info: Info, order_id: str, provider_company_id: str) -> OrderType:
    ctx = info.context
    row = await orders.assign_order(ctx.access, order_id, provider_company_id, ctx.ip)
    return OrderType(row=row)


async def update_order_status(
    info: Info, order_id: str, status: OrderStatus, note: str | None
) -> OrderType:
    ctx = info.context
    row = await orders.update_status(ctx.access, order_id, status, note, ctx.ip)
    return OrderType(row=row)


async def audit_events(
    info: Info,
    first: int | None,
    after: str | None,
    kind: str | None,
    user_id: str | None,
    model_id: str | None,
    order_id: str | None,
) -> Connection[AuditEventType]:
    page = await audit_log.list_events(
        first, after, kind=kind, user_id=user_id, model_id=model_id, order_id=order_id
    )
    return connection_from_page(page, lambda row: AuditEventType(row=row))
