"""Order types: Order, its history (OrderEvent) and OrderInput."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import strawberry
from strawberry.types import Info

from domain import order_states
from domain.order_states import OrderStatus
from domain.orders import actor_of, history_for, subject_of
from domain.policy import Subject
from schema.accounts.types import AddressInput, AddressType, CompanyType, UserType
from schema.fields import from_row, guarded
from schema.materials.types import QuoteType
from schema.models.types import ModelType
from storage.models import Order, OrderEvent, Quote

strawberry.enum(OrderStatus, name="OrderStatus")  # registers the class itself
OrderStatusEnum: TypeAlias = OrderStatus


async def _person(info: Info, user_id: object) -> UserType | None:
    # People are anonymised, never deleted; a missing link answers null for this field.
    user = await info.context.loaders.user.load(user_id) if user_id is not None else None
    return UserType(row=user) if user is not None else None


@strawberry.type(name="OrderEvent", description="One step of an order's history.")
class OrderEventType:
    row: strawberry.Private[OrderEvent]
    # An event is part of its order: whoever reaches the order reaches its history.
    order_subject: strawberry.Private[Subject]

    def policy_subject(self) -> Subject:
        return self.order_subject

    @guarded()
    def status(self) -> OrderStatusEnum:
        return OrderStatus(self.row.status)

    at: datetime = from_row("at")

    @guarded(description="Who took the step: staff only, so null for everyone else.")
    async def by(self, info: Info) -> UserType | None:
        return await _person(info, self.row.by_id)

    note: str | None = from_row("note")
    ip: str | None = from_row("ip")


@strawberry.type(name="Order")
class OrderType:
    row: strawberry.Private[Order]

    def policy_subject(self) -> Subject:
        return subject_of(self.row)

    @guarded()
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    @guarded(description="Null once the model was deleted: orders are kept, models need not be.")
    async def model(self, info: Info) -> ModelType | None:
        if self.row.model_id is None:
            return None
        row = await info.context.loaders.model.load(self.row.model_id)
        return ModelType(row=row) if row else None

    @guarded(description="Who asked for the print (null for the provider).")
    async def customer(self, info: Info) -> UserType | None:
        return await _person(info, self.row.customer_id)

    @guarded(description="The print service holding the order; null until assigned.")
    async def provider(self, info: Info) -> CompanyType | None:
        if self.row.provider_id is None:
            return None
        return CompanyType(row=await info.context.loaders.company.load(self.row.provider_id))

    @guarded()
    def status(self) -> OrderStatusEnum:
        return OrderStatus(self.row.status)

    quantity: int = from_row("quantity")
    material: str = from_row("material")

    @guarded(
        description="Null once erased: the customer deleted their account and the "
        "order no longer needs it."
    )
    def shipping_address(self) -> AddressType | None:
        return AddressType.from_dict(self.row.shipping_address)

    @guarded(description="Null for the provider.")
    def billing_address(self) -> AddressType | None:
        return AddressType.from_dict(self.row.billing_address)

    billing_info: str | None = from_row("billing_info")

    @guarded(description="Every step, oldest first (a provider's from its assignment on).")
    async def history(self, info: Info) -> list[OrderEventType]:
        events = await info.context.loaders.order_events.load(self.row.id)
        subject = subject_of(self.row)
        actor = actor_of(await info.context.relations_to(subject))
        return [
            OrderEventType(row=event, order_subject=subject) for event in history_for(events, actor)
        ]

    @guarded(description="The statuses the caller may move this order to with updateOrderStatus.")
    async def next_steps(self, info: Info) -> list[OrderStatusEnum]:
        held = await info.context.relations_to(subject_of(self.row))
        return order_states.next_steps(OrderStatus(self.row.status), actor_of(held))

    created_at: datetime = from_row("created_at")
    ip: str | None = from_row("ip")

    @guarded(description="The quote it was ordered from, if any (not for the provider).")
    async def quote(self) -> QuoteType | None:
        if self.row.quote_id is None:
            return None
        row = await Quote.get_or_none(id=self.row.quote_id)
        return QuoteType(row=row) if row else None

    @guarded(
        description="What the customer pays: the quote's total, or the published "
        "formula's price when ordered without a quote (not for the provider)."
    )
    def price(self) -> float | None:
        return float(self.row.price) if self.row.price is not None else None

    @guarded()
    def currency(self) -> str | None:
        return self.row.currency


@strawberry.input(name="OrderInput")
class OrderInput:
    model_id: strawberry.ID
    quantity: int
    material: str
    shipping_address: AddressInput
    billing_address: AddressInput
    billing_info: str | None = strawberry.field(
        default=None, description="VAT id, purchase order number: free text, at most 500."
    )
    quote_id: strawberry.ID | None = strawberry.field(
        default=None, description="Order from this quote: material, quantity and price are its."
    )
