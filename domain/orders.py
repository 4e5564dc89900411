"""Print orders: requesting one, assigning it to a print service, moving its status.

Every change is one transaction: the order row, an OrderEvent (who, when, note,
IP) and an audit event, or nothing. Which step may follow which, and who may
take it, is domain/order_states.py; who may touch an order at all is
domain/policy.py. Two changes of the same order cannot both win: each names
the `version` it read and updates only if that is still the version stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from domain import audit, catalogue, order_states, privacy, quoting
from domain.enums import CompanyKind
from domain.errors import BadUserInput, InvalidTransition, NotFound, NotPrintable
from domain.ids import parse_id
from domain.lookups import authorized, reachable
from domain.model_files import find_model_for
from domain.order_states import Actor, OrderStatus, Via
from domain.pagination import Page, paginate
from domain.policy import Access, Rel, Subject, order_holder, reach_filter
from domain.quotes import order_terms, pick_material
from domain.validation import clean_address, clean_text
from storage.crypto import KeyRing
from storage.models import Company, Model3D, Order, OrderEvent, Quote

MIN_QUANTITY, MAX_QUANTITY = 1, 10_000
MAX_BILLING_INFO = 500
MAX_NOTE = 2_000


def subject_of(order: Order) -> Subject:
    # A provider holds an order only while it is active: once it declined, or the
    # order was cancelled or delivered, it neither sees the order nor fetches the file.
    holder = order_holder(order.provider_id, order.status)
    return Subject("Order", order.id, company_id=order.company_id, provider_id=holder)


@dataclass(frozen=True)
class OrderRequest:
    model_id: object
    quantity: int
    material: str
    shipping_address: dict[str, Any]
    billing_address: dict[str, Any]
    billing_info: str | None = None
    quote_id: object | None = None


def clean_quantity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadUserInput("quantity must be a whole number.", field="quantity")
    if not MIN_QUANTITY <= value <= MAX_QUANTITY:
        raise BadUserInput(
            f"quantity must be between {MIN_QUANTITY} and {MAX_QUANTITY}.", field="quantity"
        )
    return value


@dataclass(frozen=True)
class Terms:
    """What an order is made of: from a quote, or judged and priced now."""

    material: str
    quantity: int
    price: Decimal
    currency: str
    quote_id: UUID | None


async def _terms(
    access: Access,
    keyring: KeyRing,
    model: Model3D,
    request: OrderRequest,
    reanalyse: quoting.Reanalyse | None,
) -> Terms:
    """The order's material, quantity and price; NOT_PRINTABLE (nothing created) when
    the model is not analysed or fails the material's checks."""
    quantity = clean_quantity(request.quantity)
    materials = await catalogue.catalogue()
    now = datetime.now(UTC)
    if request.quote_id is None:
        material = pick_material(request.material, materials)
        draft = await quoting.judge(keyring, model, material, quantity, now, reanalyse)
        _refuse_unprintable(draft.printable, draft.verdict.reason)
        total, currency = draft.price.total, draft.price.currency
        return Terms(material.code, quantity, total, currency, None)
    quote = await _own_quote(access, request.quote_id, model)
    terms = order_terms(quote.snapshot, request.material, quantity, now)
    pick_material(terms.material_code, materials)  # withdrawn since: no longer orderable
    await quoting.analysed_part(keyring, model, reanalyse)  # analysed again since, and failed?
    reason = next((i["message"] for i in quote.snapshot["issues"] if i["severity"] == "error"), "")
    _refuse_unprintable(terms.printable, reason)
    return Terms(terms.material_code, terms.quantity, terms.total, terms.currency, quote.id)


async def _own_quote(access: Access, quote_id: object, model: Model3D) -> Quote:
    """The caller's company's quote for this model; NOT_FOUND for anyone else's."""
    quote = await quoting.find_quote(access, quote_id)
    if quote.model_id != model.id:
        raise BadUserInput("The quote is for another model.", field="quoteId")
    return quote


def _refuse_unprintable(printable: bool, reason: str) -> None:
    if not printable:
        raise NotPrintable(reason or "The model cannot be printed in this material.")


async def request_order(
    access: Access,
    keyring: KeyRing,
    request: OrderRequest,
    ip: str | None,
    reanalyse: quoting.Reanalyse | None = None,
) -> Order:
    """A customer asks for prints of one of its company's models: status REQUESTED."""
    model = await find_model_for(access, "Mutation.requestOrder", request.model_id)
    shipping = clean_address(request.shipping_address, "shippingAddress", required=True)
    billing = clean_address(request.billing_address, "billingAddress", required=True)
    info = clean_text(
        request.billing_info, "billingInfo", max_length=MAX_BILLING_INFO, required=False
    )
    terms = await _terms(access, keyring, model, request, reanalyse)
    viewer = access.viewer
    async with in_transaction():
        order = await Order.create(
            model_id=model.id,
            customer_id=viewer.user_id,
            company_id=model.company_id,
            status=OrderStatus.REQUESTED,
            quantity=terms.quantity,
            material=terms.material,
            shipping_address=shipping,
            billing_address=billing,
            billing_info=info,
            ip=ip,
            quote_id=terms.quote_id,
            price=terms.price,
            currency=terms.currency,
        )
        await OrderEvent.create(
            order_id=order.id, status=OrderStatus.REQUESTED, by_id=viewer.user_id, ip=ip
        )
        await audit.record(
            "order.requested",
            actor_id=viewer.user_id,
            company_id=model.company_id,
            model_id=model.id,
            order_id=order.id,
            ip=ip,
            quantity=terms.quantity,
            material=terms.material,
            quote_id=terms.quote_id,
        )
    return order


async def find_order(access: Access, order_id: object) -> Order:
    return await reachable(access, Order, order_id, subject_of)


async def find_order_for(access: Access, key: str, order_id: object) -> Order:
    return await authorized(access, key, Order, order_id, subject_of)


async def assign_order(
    access: Access, order_id: object, provider_company_id: object, ip: str | None
) -> Order:
    """Staff hand an order to a print service (or to another one: the rights move at once)."""
    order = await find_order_for(access, "Mutation.assignOrder", order_id)
    provider = await Company.get_or_none(id=parse_id(provider_company_id, "Company"))
    if provider is None:
        raise NotFound("Company not found.")
    if provider.kind != CompanyKind.PRINT_SERVICE:
        raise BadUserInput(
            "Orders can only be assigned to a print service.", field="providerCompanyId"
        )
    order_states.check(order.status, OrderStatus.ASSIGNED, Actor.STAFF, Via.ASSIGN)
    if order.model_id is None:  # deleted while the order was declined: nothing to print
        raise InvalidTransition("The order's model was deleted; it cannot be assigned.")
    if not await catalogue.offers(provider.id, order.material):
        raise BadUserInput(
            f"This print service does not offer {order.material}; "
            "set its materials first (setProviderMaterials).",
            field="providerCompanyId",
        )
    changed = await _move(access, order, OrderStatus.ASSIGNED, None, ip, provider_id=provider.id)
    # Whatever this request computed about the order's holders is now out of date.
    access.forget(subject_of(order))
    access.forget_model(order.model_id)
    return changed


async def update_status(
    access: Access, order_id: object, status: OrderStatus, note: str | None, ip: str | None
) -> tuple[Order, str]:
    """The order after the step, and the status it left."""
    order = await find_order_for(access, "Mutation.updateOrderStatus", order_id)
    text = clean_text(note, "note", max_length=MAX_NOTE, required=False)
    actor = actor_of(await access.relations_to(subject_of(order)))
    order_states.check(order.status, OrderStatus(status), actor)
    # The response is answered with the rights the caller acted with: a provider that
    # just declined or delivered still sees the order it changed, not afterwards.
    moved = await _move(access, order, OrderStatus(status), text, ip)
    # ...but what follows in the same document is answered with the new rights: a
    # provider that declined gets no download link for the model any more (issue 10).
    access.forget_model(order.model_id)
    return moved, str(order.status)


def history_for(events: Sequence[OrderEvent], actor: Actor) -> list[OrderEvent]:
    """A provider sees the history from its own assignment on: what an earlier
    provider noted (why it declined, say) is none of the next one's business."""
    events = list(events)
    if actor is not Actor.PROVIDER:
        return events
    starts = [i for i, event in enumerate(events) if event.status == OrderStatus.ASSIGNED]
    return events[starts[-1] :] if starts else events


def actor_of(held: frozenset[Rel]) -> Actor:
    """The caller's part in an order, from its relations to it (one role per user)."""
    if Rel.STAFF in held:
        return Actor.STAFF
    if Rel.ASSIGNED_PROVIDER in held:
        return Actor.PROVIDER
    if Rel.SAME_COMPANY in held:
        return Actor.CUSTOMER
    raise NotFound("Order not found.")  # unreachable after authorize; never guess a part


async def _move(
    access: Access,
    order: Order,
    target: OrderStatus,
    note: str | None,
    ip: str | None,
    *,
    provider_id: UUID | None = None,
) -> Order:
    """Write the step unless someone changed the order since `order` was read.

    The UPDATE names the version read: of two concurrent steps, the second matches
    no row (PostgreSQL re-checks the condition after waiting for the first's row
    lock; SQLite runs one writer at a time) and fails with INVALID_TRANSITION.
    """
    changes: dict[str, Any] = {"status": target, "version": F("version") + 1}
    if provider_id is not None:
        changes["provider_id"] = provider_id
    source, previous_provider = order.status, order.provider_id
    async with in_transaction():
        updated = await Order.filter(id=order.id, version=order.version).update(**changes)
        if updated != 1:
            raise InvalidTransition(
                "The order was changed by someone else meanwhile; reload it and try again.",
                reason="STALE",
            )
        await OrderEvent.create(
            order_id=order.id, status=target, by_id=access.viewer.user_id, note=note, ip=ip
        )
        await privacy.erase_when_closed(order.id)
        detail: dict[str, Any] = {"from": str(source), "to": str(target)}
        if provider_id is not None:
            detail |= {"provider_id": provider_id, "previous_provider_id": previous_provider}
        await audit.record(
            "order.assigned" if provider_id is not None else "order.status_changed",
            actor_id=access.viewer.user_id,
            company_id=order.company_id,
            model_id=order.model_id,
            order_id=order.id,
            ip=ip,
            **detail,
        )
    return await Order.get(id=order.id)


async def live_event(
    access: Access, message: dict[str, Any]
) -> tuple[Order, OrderEvent] | None:
    """The order and its step an event-bus message names, if the caller may see it now."""
    try:
        order_id, event_id = UUID(str(message["orderId"])), int(message["eventId"])
    except (KeyError, ValueError, TypeError):
        return None
    order = await Order.get_or_none(id=order_id)
    if order is None or not await access.may("Subscription.orderEvents", subject_of(order)):
        return None
    event = await OrderEvent.get_or_none(id=event_id, order_id=order.id)
    return (order, event) if event is not None else None


async def list_orders(
    access: Access, first: int | None, after: str | None, status: OrderStatus | None
) -> Page[Order]:
    query = Order.filter(reach_filter("Order", access.viewer))
    if status is not None:
        query = query.filter(status=OrderStatus(status))
    return await paginate(query, first, after)
