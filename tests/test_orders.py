"""Print orders end to end: request, assignment, the provider's steps to delivery,
the state machine for every caller, concurrent updates, hostile input, and who
sees what of an order."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import pytest

from domain import order_states, orders
from domain.auth import viewer_for
from domain.errors import InvalidTransition
from domain.order_states import Actor, Via
from domain.policy import PROVIDER_ACTIVE_STATUSES, Access
from storage.models import (
    AnalysisStatus,
    AuditEvent,
    Company,
    CompanyKind,
    Model3D,
    Order,
    OrderEvent,
    OrderStatus,
    Role,
)
from tests.helpers import (
    ADDRESS,
    ADDRESS_DICT,
    Api,
    Caller,
    analysed_model,
    box_stl,
    offer_every_material,
    wait_analysed,
)

REQUEST = """mutation($i: OrderInput!) { requestOrder(input: $i) {
  id status quantity material shippingAddress { line1 city country } billingAddress { city }
  billingInfo history { status note } nextSteps } }"""
ASSIGN = """mutation($o: ID!, $c: ID!) { assignOrder(orderId: $o, providerCompanyId: $c) {
  id status provider { id name } } }"""
UPDATE = """mutation($o: ID!, $s: OrderStatus!, $n: String) {
  updateOrderStatus(orderId: $o, status: $s, note: $n) { id status history { status note } } }"""
ORDER = "query($o: ID!) { order(id: $o) { id status } }"
ORDERS = (
    "query($s: OrderStatus) { orders(first: 100, status: $s) { edges { node { id status } } } }"
)
DOWNLOAD = "mutation($m: ID!) { requestDownload(modelId: $m) { url expiresAt } }"
AUDIT = """query($o: ID, $m: ID, $k: String, $u: ID) {
  auditLog(first: 100, orderId: $o, modelId: $m, kind: $k, userId: $u) {
    edges { node { kind ip actorId orderId modelId detail } } } }"""
SHIPPING = {
    "line1": "Werkstr. 5",
    "line2": "Tor 2",
    "postalCode": "80331",
    "city": "München",
    "country": "de",
}


@dataclass
class Cast:
    customer: Caller  # admin of company A, owner of the model
    colleague: Caller  # another customer of company A
    stranger: Caller  # a customer of company B
    provider: Caller  # of print service P1
    rival: Caller  # of print service P2
    staff: Caller
    p1: Company
    p2: Company
    model: Model3D


@pytest.fixture
async def cast(api: Api) -> Cast:
    customer = await api.customer()
    company_a = await Company.get(id=customer.user.company_id)
    p1 = await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
    p2 = await Company.create(name="Print GmbH", kind=CompanyKind.PRINT_SERVICE)
    for print_service in (p1, p2):
        await offer_every_material(print_service.id)
    return Cast(
        customer=customer,
        colleague=await api.member(company_a, Role.CUSTOMER),
        stranger=await api.customer(),
        provider=await api.provider(p1),
        rival=await api.provider(p2),
        staff=await api.staff(),
        p1=p1,
        p2=p2,
        model=await _model_row(api, company_a.id, customer.user.id),
    )


async def _model_row(api: Api, company_id, owner_id) -> Model3D:
    """A model analysed as a 10x20x30 mm box: printable in every seeded material."""
    return await analysed_model(api.services.keyring, company_id, owner_id)


def order_input(model_id, **overrides) -> dict:
    data = {
        "modelId": str(model_id),
        "quantity": 3,
        "material": "PETG",
        "shippingAddress": SHIPPING,
        "billingAddress": ADDRESS,
        "billingInfo": "VAT DE123456789, PO 4711",
    }
    data.update(overrides)
    return data


async def _order_row(cast: Cast, status: OrderStatus, provider: Company | None = None) -> Order:
    """An order as if it had got to `status` (with P1 as provider once assigned)."""
    if provider is None and status not in (OrderStatus.REQUESTED,):
        provider = cast.p1
    order = await Order.create(
        model_id=cast.model.id,
        customer_id=cast.customer.user.id,
        company_id=cast.model.company_id,
        provider_id=provider.id if provider else None,
        status=status,
        quantity=1,
        material="PLA",
        shipping_address=ADDRESS_DICT,
        billing_address=ADDRESS_DICT,
        ip="198.51.100.9",
    )
    await OrderEvent.create(order_id=order.id, status=status, by_id=cast.customer.user.id)
    return order


async def _state(order_id) -> tuple[str, int, int]:
    row = await Order.get(id=order_id)
    return row.status, row.version, await OrderEvent.filter(order_id=order_id).count()


async def _kinds(api: Api, staff: Caller, **filters) -> list[str]:
    variables = {key: str(value) for key, value in filters.items()}
    edges = (await api.ok(AUDIT, variables, staff.token))["auditLog"]["edges"]
    return [edge["node"]["kind"] for edge in reversed(edges)]  # oldest first


# --- the whole story ---------------------------------------------------------------------


async def test_from_upload_to_delivery(api: Api, cast: Cast) -> None:
    content = box_stl(header=b"ORDER-STORY")
    uploaded = await api.upload(content, "bracket.stl", cast.customer.token)
    model_id = uploaded.json()["data"]["uploadModel"]["id"]
    assert (await wait_analysed(model_id)).analysis_status == AnalysisStatus.DONE

    # The customer asks for a print.
    order = (await api.ok(REQUEST, {"i": order_input(model_id)}, cast.customer.token))[
        "requestOrder"
    ]
    assert order["status"] == "REQUESTED" and order["quantity"] == 3 and order["material"] == "PETG"
    assert order["shippingAddress"] == {"line1": "Werkstr. 5", "city": "München", "country": "DE"}
    assert order["billingInfo"] == "VAT DE123456789, PO 4711"
    assert order["history"] == [{"status": "REQUESTED", "note": None}]
    assert order["nextSteps"] == ["CANCELLED"]
    row = await Order.get(id=order["id"])
    assert row.ip == "203.0.113.7" and row.customer_id == cast.customer.user.id
    assert row.company_id == cast.customer.user.company_id and row.provider_id is None
    # No provider holds it yet: for them it does not exist.
    for outsider in (cast.provider, cast.rival, cast.stranger):
        assert (await api.ok(ORDER, {"o": order["id"]}, outsider.token))["order"] is None

    # Staff assign it to P1.
    assigned = (await api.ok(ASSIGN, {"o": order["id"], "c": str(cast.p1.id)}, cast.staff.token))[
        "assignOrder"
    ]
    assert assigned["status"] == "ASSIGNED" and assigned["provider"]["id"] == str(cast.p1.id)

    # The provider finds it in its list, sees what it needs, fetches the file.
    listed = (await api.ok(ORDERS, {}, cast.provider.token))["orders"]["edges"]
    assert [e["node"]["id"] for e in listed] == [order["id"]]
    seen = (
        await api.ok(
            "query($o: ID!) { order(id: $o) { quantity material model { id name fileName } "
            "shippingAddress { line1 line2 postalCode city country } nextSteps } }",
            {"o": order["id"]},
            cast.provider.token,
        )
    )["order"]
    assert seen["model"] == {"id": model_id, "name": "bracket.stl", "fileName": "bracket.stl"}
    assert seen["shippingAddress"]["line2"] == "Tor 2" and seen["nextSteps"] == [
        "ACCEPTED",
        "DECLINED",
    ]
    link = (await api.ok(DOWNLOAD, {"m": model_id}, cast.provider.token))["requestDownload"]
    response = await api.client.get(link["url"])  # the link itself is the credential
    assert response.status_code == 200 and response.content == content

    # ... and moves it to DELIVERED, step by step.
    for status, note in (
        ("ACCEPTED", "OK, 2 days"),
        ("IN_PRODUCTION", None),
        ("SHIPPED", "DHL 0034"),
        ("DELIVERED", None),
    ):
        moved = (
            await api.ok(UPDATE, {"o": order["id"], "s": status, "n": note}, cast.provider.token)
        )["updateOrderStatus"]
        assert moved["status"] == status and moved["history"][-1] == {
            "status": status,
            "note": note,
        }

    steps = ["REQUESTED", "ASSIGNED", "ACCEPTED", "IN_PRODUCTION", "SHIPPED", "DELIVERED"]
    history = (
        await api.ok(
            "query($o: ID!) { order(id: $o) { status history { status at note by { id } ip } } }",
            {"o": order["id"]},
            cast.staff.token,
        )
    )["order"]["history"]
    assert [event["status"] for event in history] == steps
    assert [event["by"]["id"] for event in history] == [
        str(cast.customer.user.id),
        str(cast.staff.user.id),
        *[str(cast.provider.user.id)] * 4,
    ]
    assert {event["ip"] for event in history} == {"203.0.113.7"}
    assert [e["at"] for e in history] == sorted(e["at"] for e in history)
    # The customer follows along, without who or where.
    mine = (
        await api.ok(
            "query($o: ID!) { order(id: $o) { status history { status note } } }",
            {"o": order["id"]},
            cast.customer.token,
        )
    )["order"]
    assert mine["status"] == "DELIVERED" and [e["status"] for e in mine["history"]] == steps

    # Every step is in the audit trail, with the caller's IP.
    assert await _kinds(api, cast.staff, o=order["id"]) == [
        "order.requested",
        "order.assigned",
        *["order.status_changed"] * 4,
    ]
    model_kinds = await _kinds(api, cast.staff, m=model_id)
    assert {"model.uploaded", "order.requested", "download.link_issued", "download"} <= set(
        model_kinds
    )
    assert {row.ip for row in await AuditEvent.filter(order_id=order["id"])} == {"203.0.113.7"}

    # Delivered: the provider holds the order no more.
    assert (await api.ok(ORDER, {"o": order["id"]}, cast.provider.token))["order"] is None
    assert (await api.ok(ORDERS, {}, cast.provider.token))["orders"]["edges"] == []
    assert (await api.client.get(link["url"])).status_code == 404


async def test_a_provider_api_token_does_all_of_the_providers_steps(api: Api, cast: Cast) -> None:
    token = (await api.ok('mutation { createApiToken(name: "mes") }', token=cast.provider.token))[
        "createApiToken"
    ]
    order = await _order_row(cast, OrderStatus.ASSIGNED)
    listed = (await api.ok(ORDERS, {"s": "ASSIGNED"}, token))["orders"]["edges"]
    assert [e["node"]["id"] for e in listed] == [str(order.id)]
    link = (await api.ok(DOWNLOAD, {"m": str(cast.model.id)}, token))["requestDownload"]
    assert link["url"].startswith("/files/")
    for status in ("ACCEPTED", "IN_PRODUCTION", "SHIPPED", "DELIVERED"):
        assert (await api.ok(UPDATE, {"o": str(order.id), "s": status}, token))[
            "updateOrderStatus"
        ]["status"] == status
    events = await OrderEvent.filter(order_id=order.id).order_by("id")
    assert [e.by_id for e in events[1:]] == [cast.provider.user.id] * 4
    # A token acts as its user, no more: staff steps stay refused.
    second = await _order_row(cast, OrderStatus.ASSIGNED)
    assert (
        await api.error_code(ASSIGN, {"o": str(second.id), "c": str(cast.p1.id)}, token)
        == "FORBIDDEN"
    )
    assert (
        await api.error_code(UPDATE, {"o": str(second.id), "s": "CANCELLED"}, token)
        == "INVALID_TRANSITION"
    )


# --- assignment ---------------------------------------------------------------------------


async def test_reassignment_moves_the_providers_rights_at_once(api: Api, cast: Cast) -> None:
    order = await _order_row(cast, OrderStatus.ASSIGNED)
    link = (await api.ok(DOWNLOAD, {"m": str(cast.model.id)}, cast.provider.token))[
        "requestDownload"
    ]["url"]
    await api.ok(ASSIGN, {"o": str(order.id), "c": str(cast.p2.id)}, cast.staff.token)
    # P1: nothing left, not even the link it already had.
    assert (await api.ok(ORDER, {"o": str(order.id)}, cast.provider.token))["order"] is None
    assert (
        await api.ok(
            "query($m: ID!) { model(id: $m) { id } }",
            {"m": str(cast.model.id)},
            cast.provider.token,
        )
    )["model"] is None
    assert (
        await api.error_code(UPDATE, {"o": str(order.id), "s": "ACCEPTED"}, cast.provider.token)
        == "NOT_FOUND"
    )
    assert (
        await api.error_code(DOWNLOAD, {"m": str(cast.model.id)}, cast.provider.token)
        == "NOT_FOUND"
    )
    assert (await api.client.get(link)).status_code == 404
    # P2: everything.
    assert (await api.ok(ORDER, {"o": str(order.id)}, cast.rival.token))["order"][
        "status"
    ] == "ASSIGNED"
    history = "query($o: ID!) { order(id: $o) { history { status } } }"
    seen = (await api.ok(history, {"o": str(order.id)}, cast.rival.token))["order"]["history"]
    assert seen == [{"status": "ASSIGNED"}]  # from its own assignment on
    assert (await api.ok(UPDATE, {"o": str(order.id), "s": "ACCEPTED"}, cast.rival.token))[
        "updateOrderStatus"
    ]["status"] == "ACCEPTED"
    assert (await Order.get(id=order.id)).provider_id == cast.p2.id


async def test_declined_orders_go_back_to_staff(api: Api, cast: Cast) -> None:
    order = await _order_row(cast, OrderStatus.ASSIGNED)
    await api.ok(
        UPDATE, {"o": str(order.id), "s": "DECLINED", "n": "no TPU in stock"}, cast.provider.token
    )
    assert (await api.ok(ORDER, {"o": str(order.id)}, cast.provider.token))["order"] is None
    assert (
        await api.error_code(UPDATE, {"o": str(order.id), "s": "ACCEPTED"}, cast.provider.token)
        == "NOT_FOUND"
    )
    # Staff may give it to P1 again or to another print service.
    await api.ok(ASSIGN, {"o": str(order.id), "c": str(cast.p2.id)}, cast.staff.token)
    assert (await api.ok(ORDER, {"o": str(order.id)}, cast.rival.token))["order"][
        "status"
    ] == "ASSIGNED"
    # The new provider's history starts with its own assignment: P1's note is not for it.
    history = "query($o: ID!) { order(id: $o) { history { status note } } }"
    seen = {
        name: (await api.ok(history, {"o": str(order.id)}, caller.token))["order"]["history"]
        for name, caller in (
            ("rival", cast.rival),
            ("customer", cast.customer),
            ("staff", cast.staff),
        )
    }
    assert seen["rival"] == [{"status": "ASSIGNED", "note": None}]
    full = ["ASSIGNED", "DECLINED", "ASSIGNED"]
    assert [e["status"] for e in seen["customer"]] == full == [e["status"] for e in seen["staff"]]
    assert seen["customer"][1]["note"] == "no TPU in stock"


async def test_assignment_needs_a_print_service_and_a_fitting_status(api: Api, cast: Cast) -> None:
    order = await _order_row(cast, OrderStatus.REQUESTED)
    customer_company = str(cast.customer.user.company_id)
    before = await _state(order.id)
    assert (
        await api.error_code(ASSIGN, {"o": str(order.id), "c": customer_company}, cast.staff.token)
        == "BAD_USER_INPUT"
    )
    for company in ("nope", "00000000-0000-0000-0000-000000000000"):
        assert (
            await api.error_code(ASSIGN, {"o": str(order.id), "c": company}, cast.staff.token)
            == "NOT_FOUND"
        )
    assert (
        await api.error_code(
            ASSIGN,
            {"o": "00000000-0000-0000-0000-000000000000", "c": str(cast.p1.id)},
            cast.staff.token,
        )
        == "NOT_FOUND"
    )
    for caller in (cast.customer, cast.provider):
        assert (
            await api.error_code(ASSIGN, {"o": str(order.id), "c": str(cast.p1.id)}, caller.token)
            == "FORBIDDEN"
        )
    assert await _state(order.id) == before
    # updateOrderStatus never assigns (it has no provider to assign to).
    body = await api.gql(UPDATE, {"o": str(order.id), "s": "ASSIGNED"}, cast.staff.token)
    assert body["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
    assert "assignOrder" in body["errors"][0]["message"]
    for status in (
        OrderStatus.ACCEPTED,
        OrderStatus.IN_PRODUCTION,
        OrderStatus.DELIVERED,
        OrderStatus.CANCELLED,
    ):
        busy = await _order_row(cast, status)
        before = await _state(busy.id)
        assert (
            await api.error_code(
                ASSIGN, {"o": str(busy.id), "c": str(cast.p2.id)}, cast.staff.token
            )
            == "INVALID_TRANSITION"
        )
        assert (
            await _state(busy.id) == before
            and (await Order.get(id=busy.id)).provider_id == cast.p1.id
        )


# --- the state machine, for every caller --------------------------------------------------


def test_the_state_machine_is_the_contracts() -> None:
    """shared/API.md and the issue, transcribed: (from, to, who) for updateOrderStatus."""
    s, c, p, st = OrderStatus, Actor.CUSTOMER, Actor.PROVIDER, Actor.STAFF
    expected = {
        (s.ASSIGNED, s.ACCEPTED): {p, st},
        (s.ASSIGNED, s.DECLINED): {p, st},
        (s.ACCEPTED, s.IN_PRODUCTION): {p, st},
        (s.IN_PRODUCTION, s.SHIPPED): {p, st},
        (s.SHIPPED, s.DELIVERED): {p, st},
        **{
            (source, s.CANCELLED): {c, st}
            for source in (s.REQUESTED, s.ASSIGNED, s.ACCEPTED, s.DECLINED)
        },
    }
    actual = {(x.source, x.target): set(x.by) for x in order_states.STEPS if x.via is Via.UPDATE}
    assert actual == expected
    assigning = {(x.source, x.target): set(x.by) for x in order_states.STEPS if x.via is Via.ASSIGN}
    assert assigning == {
        (source, s.ASSIGNED): {st} for source in (s.REQUESTED, s.ASSIGNED, s.DECLINED)
    }
    # Nothing leaves a final status; production cannot be cancelled.
    assert not [x for x in order_states.STEPS if x.source in order_states.FINAL]
    assert not order_states.allowed(s.IN_PRODUCTION, s.CANCELLED, st)


async def test_every_step_for_every_caller_follows_the_machine(api: Api, cast: Cast) -> None:
    callers = {
        "customer": (cast.colleague, Actor.CUSTOMER),
        "provider": (cast.provider, Actor.PROVIDER),
        "staff": (cast.staff, Actor.STAFF),
        "stranger": (cast.stranger, None),
        "rival": (cast.rival, None),
    }
    checked = 0
    for source in OrderStatus:
        for target in OrderStatus:
            for name, (caller, actor) in callers.items():
                order = await _order_row(cast, source)
                before = await _state(order.id)
                body = await api.gql(UPDATE, {"o": str(order.id), "s": target.value}, caller.token)
                if actor is None or (
                    actor is Actor.PROVIDER and source not in PROVIDER_ACTIVE_STATUSES
                ):
                    expected = "NOT_FOUND"
                elif order_states.allowed(source, target, actor):
                    expected = "OK"
                else:
                    expected = "INVALID_TRANSITION"
                outcome = body["errors"][0]["extensions"]["code"] if body.get("errors") else "OK"
                assert outcome == expected, (source, target, name, body)
                after = await _state(order.id)
                if expected == "OK":
                    assert after == (target, before[1] + 1, before[2] + 1)
                else:
                    assert after == before, (source, target, name)
                checked += 1
    assert checked == len(OrderStatus) ** 2 * len(callers)


# --- two updates at once ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("provider", "ACCEPTED"), ("provider", "DECLINED")),
        (("provider", "ACCEPTED"), ("customer", "CANCELLED")),
        (("staff", "DECLINED"), ("customer", "CANCELLED")),
    ],
)
async def test_two_concurrent_updates_cannot_both_win(
    api: Api, cast: Cast, first, second, monkeypatch: pytest.MonkeyPatch
) -> None:
    callers = {"provider": cast.provider, "customer": cast.customer, "staff": cast.staff}
    move = orders._move

    async def move_after_both_read(*args, **kwargs):
        # Both requests have read the order as ASSIGNED before either writes: the race
        # happens every time, whatever the scheduling before (a rate-limit check, say).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(barrier.wait(), 5)
        return await move(*args, **kwargs)

    monkeypatch.setattr(orders, "_move", move_after_both_read)
    for _ in range(5):
        barrier = asyncio.Barrier(2)
        order = await _order_row(cast, OrderStatus.ASSIGNED)
        bodies = await asyncio.gather(
            *(
                api.gql(UPDATE, {"o": str(order.id), "s": status}, callers[who].token)
                for who, status in (first, second)
            )
        )
        winners = [body for body in bodies if not body.get("errors")]
        losers = [body for body in bodies if body.get("errors")]
        assert len(winners) == 1 and len(losers) == 1, bodies
        error = losers[0]["errors"][0]
        if error["extensions"]["code"] == "NOT_FOUND":
            # The loser came second and found that the winner had ended its hold on the
            # order (declined or cancelled it): a provider then loses the order itself.
            loser = first if winners[0] is bodies[1] else second
            won = winners[0]["data"]["updateOrderStatus"]["status"]
            assert loser[0] == "provider" and won not in PROVIDER_ACTIVE_STATUSES, (loser, won)
        else:
            assert error["extensions"]["code"] == "INVALID_TRANSITION", error
        status, version, events = await _state(order.id)
        assert status == winners[0]["data"]["updateOrderStatus"]["status"]
        assert (version, events) == (2, 2)
        assert await AuditEvent.filter(order_id=order.id, kind="order.status_changed").count() == 1


async def test_concurrent_assignment_and_cancellation(api: Api, cast: Cast) -> None:
    order = await _order_row(cast, OrderStatus.REQUESTED)
    bodies = await asyncio.gather(
        api.gql(ASSIGN, {"o": str(order.id), "c": str(cast.p1.id)}, cast.staff.token),
        api.gql(UPDATE, {"o": str(order.id), "s": "CANCELLED"}, cast.customer.token),
    )
    assert sum(1 for body in bodies if not body.get("errors")) == 1, bodies
    status, version, events = await _state(order.id)
    assert status in ("ASSIGNED", "CANCELLED") and (version, events) == (2, 2)


async def test_a_stale_read_never_writes(api: Api, cast: Cast) -> None:
    """The version check itself, without relying on how two requests interleave."""
    order = await _order_row(cast, OrderStatus.ASSIGNED)
    snapshot = await Order.get(id=order.id)
    staff = Access(viewer_for(cast.staff.user), lambda _: asyncio.sleep(0, frozenset()))
    await orders._move(staff, snapshot, OrderStatus.ACCEPTED, None, "192.0.2.1")
    with pytest.raises(InvalidTransition) as raised:
        await orders._move(staff, snapshot, OrderStatus.DECLINED, None, "192.0.2.1")
    assert raised.value.extensions == {"reason": "STALE"}
    assert await _state(order.id) == (OrderStatus.ACCEPTED, 2, 2)


# --- hostile and wrong input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"quantity": 0}, "BAD_USER_INPUT"),
        ({"quantity": -5}, "BAD_USER_INPUT"),
        ({"quantity": 10_001}, "BAD_USER_INPUT"),
        ({"quantity": 2**40}, "BAD_USER_INPUT"),  # not even a GraphQL Int
        ({"quantity": "3"}, "BAD_USER_INPUT"),
        ({"material": "GOLD"}, "BAD_USER_INPUT"),
        ({"material": ""}, "BAD_USER_INPUT"),
        ({"shippingAddress": {**SHIPPING, "country": "XX"}}, "BAD_USER_INPUT"),
        ({"shippingAddress": {**SHIPPING, "country": "DEU"}}, "BAD_USER_INPUT"),
        ({"shippingAddress": {**SHIPPING, "line1": "   "}}, "BAD_USER_INPUT"),
        ({"shippingAddress": {**SHIPPING, "postalCode": "<script>"}}, "BAD_USER_INPUT"),
        ({"billingAddress": {**ADDRESS, "city": "x" * 101}}, "BAD_USER_INPUT"),
        ({"billingAddress": {**ADDRESS, "city": "Ber\x00lin"}}, "BAD_USER_INPUT"),
        ({"billingAddress": None}, "BAD_USER_INPUT"),
        ({"billingInfo": "x" * 501}, "BAD_USER_INPUT"),
        ({"billingInfo": "PO\x1b[31m"}, "BAD_USER_INPUT"),
        ({"modelId": "00000000-0000-0000-0000-000000000000"}, "NOT_FOUND"),
        ({"modelId": "not-an-id"}, "NOT_FOUND"),
        ({"modelId": "foreign"}, "NOT_FOUND"),
    ],
)
async def test_bad_requests_change_nothing(
    api: Api, cast: Cast, overrides: dict, code: str
) -> None:
    if overrides.get("modelId") == "foreign":
        other = await _model_row(api, cast.stranger.user.company_id, cast.stranger.user.id)
        overrides = {"modelId": str(other.id)}
    body = await api.gql(
        REQUEST, {"i": order_input(cast.model.id, **overrides)}, cast.customer.token
    )
    assert body["errors"][0]["extensions"]["code"] == code, body
    assert await Order.all().count() == 0 and await OrderEvent.all().count() == 0
    assert await AuditEvent.filter(kind="order.requested").count() == 0


async def test_material_codes_are_the_catalogues(api: Api, cast: Cast) -> None:
    """Codes are exact: another spelling, an inactive or unknown code is refused with the
    list of valid codes, and nothing is written."""
    for code in ("petg", " PETG", "PA12", "GOLD", "PLA'; DROP TABLE material; --"):
        body = await api.gql(
            REQUEST, {"i": order_input(cast.model.id, material=code)}, cast.customer.token
        )
        extensions = body["errors"][0]["extensions"]
        extensions.pop("requestId", None)  # every error carries its request's id (issue 14)
        assert extensions["code"] == "BAD_USER_INPUT" and extensions["field"] == "material"
        assert "PETG" in extensions["valid"] and "PA12" not in extensions["valid"], body
        assert "DROP" not in body["errors"][0]["message"]  # the caller's text is never echoed
    assert await Order.all().count() == 0


async def test_bad_status_updates_change_nothing(api: Api, cast: Cast) -> None:
    order = await _order_row(cast, OrderStatus.ASSIGNED)
    before = await _state(order.id)
    for variables, code in (
        ({"s": "ACCEPTED", "n": "x" * 2001}, "BAD_USER_INPUT"),
        ({"s": "ACCEPTED", "n": "bell\x07"}, "BAD_USER_INPUT"),
        ({"s": "SHIPPED"}, "INVALID_TRANSITION"),
        ({"s": "LOST"}, "BAD_USER_INPUT"),
        ({"s": "ACCEPTED", "o": "00000000-0000-0000-0000-000000000000"}, "NOT_FOUND"),
        ({"s": "ACCEPTED", "o": "' OR 1=1 --"}, "NOT_FOUND"),
    ):
        assert (
            await api.error_code(UPDATE, {"o": str(order.id), **variables}, cast.provider.token)
            == code
        ), variables
    assert await _state(order.id) == before
    assert await AuditEvent.filter(kind="order.status_changed").count() == 0


# --- who sees what --------------------------------------------------------------------------


async def test_each_role_sees_its_orders(api: Api, cast: Cast) -> None:
    requested = await _order_row(cast, OrderStatus.REQUESTED)
    p1_active = await _order_row(cast, OrderStatus.IN_PRODUCTION)
    p1_done = await _order_row(cast, OrderStatus.DELIVERED)
    p2_active = await _order_row(cast, OrderStatus.ACCEPTED, provider=cast.p2)
    elsewhere = await Order.create(
        model_id=(await _model_row(api, cast.stranger.user.company_id, cast.stranger.user.id)).id,
        customer_id=cast.stranger.user.id,
        company_id=cast.stranger.user.company_id,
        status="REQUESTED",
        quantity=1,
        material="PLA",
        shipping_address=ADDRESS_DICT,
        billing_address=ADDRESS_DICT,
    )
    company_a = {str(o.id) for o in (requested, p1_active, p1_done, p2_active)}

    async def ids(caller: Caller, status: str | None = None) -> set[str]:
        edges = (await api.ok(ORDERS, {"s": status}, caller.token))["orders"]["edges"]
        return {e["node"]["id"] for e in edges}

    assert await ids(cast.customer) == company_a == await ids(cast.colleague)
    assert await ids(cast.stranger) == {str(elsewhere.id)}
    assert await ids(cast.provider) == {str(p1_active.id)}
    assert await ids(cast.rival) == {str(p2_active.id)}
    assert await ids(cast.staff) == company_a | {str(elsewhere.id)}
    assert await ids(cast.customer, "REQUESTED") == {str(requested.id)}
    assert await ids(cast.provider, "DELIVERED") == set()
    assert await api.error_code(ORDERS, {}) == "UNAUTHENTICATED"
    # Model.orders: the same rule, per model.
    model_orders = "query($m: ID!) { model(id: $m) { orders { id } } }"
    for caller, expected in (
        (cast.customer, company_a),
        (cast.provider, {str(p1_active.id)}),
        (cast.rival, {str(p2_active.id)}),
        (cast.staff, company_a),
    ):
        found = (await api.ok(model_orders, {"m": str(cast.model.id)}, caller.token))["model"][
            "orders"
        ]
        assert {o["id"] for o in found} == expected
    # Paging through them.
    page = (
        await api.ok(
            "{ orders(first: 2) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }",
            token=cast.customer.token,
        )
    )["orders"]
    rest = (
        await api.ok(
            "query($a: String) { orders(first: 10, after: $a) { edges { node { id } } pageInfo { hasNextPage } } }",
            {"a": page["pageInfo"]["endCursor"]},
            cast.customer.token,
        )
    )["orders"]
    assert page["pageInfo"]["hasNextPage"] and not rest["pageInfo"]["hasNextPage"]
    assert {e["node"]["id"] for e in page["edges"] + rest["edges"]} == company_a


async def test_what_a_provider_sees_of_an_order(api: Api, cast: Cast) -> None:
    order = await _order_row(cast, OrderStatus.ACCEPTED)
    allowed = "id status quantity material createdAt shippingAddress { city } model { id name fileName } provider { name } history { status at note }"
    assert not (
        await api.gql(
            "query($o: ID!) { order(id: $o) { %s } }" % allowed,
            {"o": str(order.id)},
            cast.provider.token,
        )
    ).get("errors")
    for field in (
        "customer { id }",
        "billingAddress { city }",
        "billingInfo",
        "ip",
        "history { by { id } }",
        "history { ip }",
        "model { metadata { volume } }",
        "model { owner { id } }",
        "model { uploadIp }",
    ):
        body = await api.gql(
            "query($o: ID!) { order(id: $o) { %s } }" % field,
            {"o": str(order.id)},
            cast.provider.token,
        )
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (field, body)


async def test_ip_addresses_only_for_staff(api: Api, cast: Cast) -> None:
    order = await _order_row(cast, OrderStatus.ASSIGNED)
    for event in await OrderEvent.filter(order_id=order.id):
        event.ip = "198.51.100.9"
        await event.save(update_fields=["ip"])
    for caller in (cast.customer, cast.colleague, cast.provider):
        for field in ("ip", "history { ip }"):
            body = await api.gql(
                "query($o: ID!) { order(id: $o) { %s } }" % field,
                {"o": str(order.id)},
                caller.token,
            )
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert (
            await api.error_code("{ auditLog { edges { node { ip } } } }", token=caller.token)
            == "FORBIDDEN"
        )
    seen = (
        await api.ok(
            "query($o: ID!) { order(id: $o) { ip history { ip } } }",
            {"o": str(order.id)},
            cast.staff.token,
        )
    )["order"]
    assert seen == {"ip": "198.51.100.9", "history": [{"ip": "198.51.100.9"}]}


async def test_who_may_request_an_order(api: Api, cast: Cast) -> None:
    variables = {"i": order_input(cast.model.id)}
    await _order_row(cast, OrderStatus.ASSIGNED)  # P1 holds the model
    assert (await api.ok(REQUEST, variables, cast.colleague.token))["requestOrder"][
        "status"
    ] == "REQUESTED"
    assert await api.error_code(REQUEST, variables) == "UNAUTHENTICATED"
    assert await api.error_code(REQUEST, variables, cast.stranger.token) == "NOT_FOUND"
    for caller in (cast.staff, cast.provider, cast.rival):  # the contract: customers only
        assert await api.error_code(REQUEST, variables, caller.token) == "FORBIDDEN"
    assert await Order.all().count() == 2


async def test_refusals_are_audited(api: Api, cast: Cast) -> None:
    order = await _order_row(cast, OrderStatus.ASSIGNED)
    await api.error_code(ASSIGN, {"o": str(order.id), "c": str(cast.p2.id)}, cast.customer.token)
    await api.error_code(UPDATE, {"o": str(order.id), "s": "ACCEPTED"}, cast.rival.token)
    await api.error_code(
        UPDATE, {"o": str(order.id), "s": "ACCEPTED"}
    )  # anonymous: noise, not audited
    denials = await AuditEvent.filter(kind="permission.denied").order_by("id")
    assert [(d.actor_id, d.detail["operation"], d.detail["reason"]) for d in denials] == [
        (cast.customer.user.id, "Mutation.assignOrder", "forbidden"),
        (cast.rival.user.id, "Mutation.updateOrderStatus", "not_found"),
    ]
    assert denials[1].order_id == order.id and {d.ip for d in denials} == {"203.0.113.7"}


async def test_a_page_of_orders_costs_a_constant_number_of_queries(
    api: Api, cast: Cast, count_queries
) -> None:
    query = """{ orders(first: 50) { edges { node { id status model { id name } customer { id firstName }
               provider { id name } shippingAddress { city } history { status } } } } }"""
    provider_query = """{ orders(first: 50) { edges { node { id model { id name fileName }
               provider { name } history { status note } } } } }"""

    async def cost(caller: Caller, document: str) -> int:
        count_queries.count = 0
        await api.ok(document, token=caller.token)
        return count_queries.count

    async def add(n: int) -> None:
        for _ in range(n):
            model = await _model_row(api, cast.model.company_id, cast.customer.user.id)
            provider = cast.p1 if _ % 2 else cast.p2
            await Order.create(
                model_id=model.id,
                customer_id=cast.customer.user.id,
                company_id=cast.model.company_id,
                provider_id=provider.id,
                status="ACCEPTED",
                quantity=1,
                material="PLA",
                shipping_address=ADDRESS_DICT,
                billing_address=ADDRESS_DICT,
            )

    customer_query = query.replace("provider { id name }", "billingAddress { city }")
    cases = {
        "staff": (cast.staff, query),
        "provider": (cast.provider, provider_query),
        "customer": (cast.customer, customer_query),
    }
    await add(2)
    small = {name: await cost(*case) for name, case in cases.items()}
    await add(60)
    large = {name: await cost(*case) for name, case in cases.items()}
    assert large == small, (small, large)
