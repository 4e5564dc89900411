"""Integrity bugs of issue 9, each reproduced through the API, then what is decided.

1. An erased customer's address ({"erased": true}) broke every page holding their
   orders with INTERNAL (KeyError 'line1'): the address now answers null.
2. An erased customer's open orders stayed live: what has not started production is
   cancelled, what is in production or shipped goes on and keeps its shipping address
   until delivered, then loses it.
3. deleteModel succeeded under an open order, leaving the provider nothing to print:
   refused with INVALID_TRANSITION while an order is open.
4. requestOrder(...) { history { by { email } } } answered data: null although the
   order was created (OrderEvent.by was non-null and forbidden to customers); the same
   for Order.customer read by a provider.
"""

from __future__ import annotations

import pytest

from domain.privacy import ERASED_ADDRESS, ERASURE_NOTE
from storage.models import (
    Company,
    CompanyKind,
    Model3D,
    Order,
    OrderEvent,
    OrderStatus,
)
from tests.helpers import (
    ADDRESS,
    ADDRESS_DICT,
    PASSWORD,
    Api,
    Caller,
    analysed_model,
    offer_every_material,
)

DELETE_ACCOUNT = "mutation($p: String!) { deleteMyAccount(password: $p) }"
ORDERS_PAGE = """{ orders(first: 50) { edges { node { id status
  shippingAddress { city } customer { id } } } } }"""
REQUEST = "mutation($i: OrderInput!) { requestOrder(input: $i) { id history { by { email } } } }"


async def _order(model: Model3D, customer: Caller, provider: Company | None, status: str) -> Order:
    order = await Order.create(
        model_id=model.id,
        customer_id=customer.user.id,
        company_id=model.company_id,
        provider_id=provider.id if provider else None,
        status=status,
        quantity=1,
        material="PLA",
        shipping_address=ADDRESS_DICT,
        billing_address=ADDRESS_DICT,
    )
    await OrderEvent.create(order_id=order.id, status=status, by_id=customer.user.id)
    return order


@pytest.fixture
async def print_service(api: Api) -> Company:
    company = await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
    await offer_every_material(company.id)
    return company


async def test_erased_address_does_not_break_order_pages(
    api: Api, customer: Caller, print_service: Company
) -> None:
    """Bug 1: staff's and the provider's order lists survive an erased customer."""
    provider = await api.provider(print_service)
    staff = await api.staff()
    model = await analysed_model(api.services.keyring, customer.user.company_id, customer.user.id)
    order = await _order(model, customer, print_service, OrderStatus.SHIPPED)
    order.shipping_address = ERASED_ADDRESS  # as erasure leaves it (a sealed column)
    await order.save(update_fields=["shipping_address"])
    for caller in (staff, provider):
        body = await api.gql(ORDERS_PAGE, token=caller.token)
        codes = {e["extensions"]["code"] for e in body.get("errors") or []}
        assert body["data"] is not None and "INTERNAL" not in codes, body
        node = body["data"]["orders"]["edges"][0]["node"]
        assert node["id"] == str(order.id) and node["shippingAddress"] is None


async def test_erasure_cancels_what_has_not_started_and_keeps_running_contracts(
    api: Api, customer: Caller, print_service: Company
) -> None:
    """Bug 2: the decision of domain/privacy.py, over the API."""
    provider = await api.provider(print_service)
    staff = await api.staff()
    model = await analysed_model(api.services.keyring, customer.user.company_id, customer.user.id)
    before = {
        status: await _order(
            model, customer, None if status == "REQUESTED" else print_service, status
        )
        for status in ("REQUESTED", "ASSIGNED", "ACCEPTED", "IN_PRODUCTION", "SHIPPED", "DELIVERED")
    }
    assert (await api.ok(DELETE_ACCOUNT, {"p": PASSWORD}, customer.token))["deleteMyAccount"]
    after = {status: await Order.get(id=order.id) for status, order in before.items()}
    for status in ("REQUESTED", "ASSIGNED", "ACCEPTED"):
        assert after[status].status == OrderStatus.CANCELLED, status
        assert after[status].shipping_address == ERASED_ADDRESS
        last = await OrderEvent.filter(order_id=after[status].id).order_by("-id").first()
        assert last is not None and last.note == ERASURE_NOTE and last.by_id is None
    for status in ("IN_PRODUCTION", "SHIPPED"):  # a running contract: kept, with its address
        assert after[status].status == status and after[status].shipping_address == ADDRESS_DICT
    assert after["DELIVERED"].shipping_address == ERASED_ADDRESS
    # A cancelled order can no longer be assigned.
    code = await api.error_code(
        "mutation($o: ID!, $c: ID!) { assignOrder(orderId: $o, providerCompanyId: $c) { id } }",
        {"o": str(before["REQUESTED"].id), "c": str(print_service.id)},
        staff.token,
    )
    assert code == "INVALID_TRANSITION"
    # The shipped order is delivered: the address goes with the contract's end.
    update = """mutation($o: ID!) { updateOrderStatus(orderId: $o, status: DELIVERED) {
      status shippingAddress { city } } }"""
    moved = (await api.ok(update, {"o": str(before["SHIPPED"].id)}, provider.token))[
        "updateOrderStatus"
    ]
    assert moved == {"status": "DELIVERED", "shippingAddress": None}
    assert (await Order.get(id=before["SHIPPED"].id)).shipping_address == ERASED_ADDRESS
    # The one in production still has it for the provider.
    seen = await api.ok(
        "query($o: ID!) { order(id: $o) { shippingAddress { city } } }",
        {"o": str(before["IN_PRODUCTION"].id)},
        provider.token,
    )
    assert seen["order"]["shippingAddress"] == {"city": "Berlin"}


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        ("REQUESTED", True),
        ("ASSIGNED", True),
        ("ACCEPTED", True),
        ("IN_PRODUCTION", True),
        ("SHIPPED", True),
        ("DELIVERED", False),
        ("DECLINED", False),
        ("CANCELLED", False),
    ],
)
async def test_delete_model_is_refused_under_an_open_order(
    api: Api, customer: Caller, print_service: Company, status: str, refused: bool
) -> None:
    """Bug 3: the contract's rule, status by status."""
    model = await analysed_model(api.services.keyring, customer.user.company_id, customer.user.id)
    await _order(model, customer, print_service, status)
    body = await api.gql(
        "mutation($m: ID!) { deleteModel(id: $m) }", {"m": str(model.id)}, customer.token
    )
    if refused:
        assert body["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION", body
        assert await Model3D.exists(id=model.id)
    else:
        assert body["data"] == {"deleteModel": True}, body
        assert not await Model3D.exists(id=model.id)


async def test_a_declined_order_of_a_deleted_model_cannot_be_assigned(
    api: Api, customer: Caller, print_service: Company
) -> None:
    staff = await api.staff()
    model = await analysed_model(api.services.keyring, customer.user.company_id, customer.user.id)
    order = await _order(model, customer, print_service, OrderStatus.DECLINED)
    await api.ok("mutation($m: ID!) { deleteModel(id: $m) }", {"m": str(model.id)}, customer.token)
    code = await api.error_code(
        "mutation($o: ID!, $c: ID!) { assignOrder(orderId: $o, providerCompanyId: $c) { id } }",
        {"o": str(order.id), "c": str(print_service.id)},
        staff.token,
    )
    assert code == "INVALID_TRANSITION"


async def test_forbidden_person_fields_blank_only_themselves(
    api: Api, customer: Caller, print_service: Company
) -> None:
    """Bug 4: the order is created and answered; only `by` is null (FORBIDDEN on it)."""
    model = await analysed_model(api.services.keyring, customer.user.company_id, customer.user.id)
    order_input = {
        "modelId": str(model.id),
        "quantity": 1,
        "material": "PLA",
        "shippingAddress": ADDRESS,
        "billingAddress": ADDRESS,
    }
    body = await api.gql(REQUEST, {"i": order_input}, customer.token)
    made = body["data"]["requestOrder"]
    assert made["id"] and made["history"] == [{"by": None}], body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert await Order.all().count() == 1
    # A provider's page of orders survives Order.customer being forbidden to it.
    staff = await api.staff()
    provider = await api.provider(print_service)
    await api.ok(
        "mutation($o: ID!, $c: ID!) { assignOrder(orderId: $o, providerCompanyId: $c) { id } }",
        {"o": made["id"], "c": str(print_service.id)},
        staff.token,
    )
    body = await api.gql(ORDERS_PAGE, token=provider.token)
    node = body["data"]["orders"]["edges"][0]["node"]
    assert node["id"] == made["id"] and node["customer"] is None
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
