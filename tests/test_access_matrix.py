"""The access matrix, generated from the policy table.

For every rule of the table and every kind of caller, the test asks the real
API and checks that the answer is what the policy says: the value when the
rule grants it, FORBIDDEN (or UNAUTHENTICATED) when it does not, and nothing at
all for objects the caller may not reach. `test_contract_*` then checks the
policy table itself against shared/API.md's access table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from domain import model_files, orders, policy, quoting, webhook_endpoints, webhooks
from domain.auth import viewer_for
from domain.hull_summary import HullSummary
from domain.manufacturability import PartFacts
from domain.materials import seed_catalogue
from domain.policy import ANONYMOUS, Rel, Subject, Viewer
from domain.quotes import draft_quote
from schema.app_schema import build_schema
from storage.models import (
    AnalysisStatus,
    Comment,
    Company,
    CompanyKind,
    Model3D,
    ModelPreview,
    Order,
    OrderEvent,
    OrderStatus,
    Quote,
    Role,
    Webhook,
    WebhookDelivery,
)
from storage.models import Material as MaterialRow
from tests.helpers import ADDRESS, ADDRESS_DICT, PASSWORD, Api, Caller, offer_every_material

DENIED = {"FORBIDDEN", "UNAUTHENTICATED"}
SCHEMA = build_schema(production=False)
MATERIAL_INPUT = {
    "code": "MATRIX",
    "name": "Matrix test",
    "process": "FDM",
    "minWallMm": 0.8,
    "buildVolume": {"x": 200, "y": 200, "z": 200},
    "pricePerCm3": 0.1,
    "machinePricePerCm3": 0.01,
    "setupFee": 5,
    "minPrice": 10,
}


@dataclass
class World:
    a_admin: Caller
    a_member: Caller
    b_admin: Caller
    provider: Caller  # assigned to an order of company A's model
    other_provider: Caller
    staff: Caller
    model: Model3D  # company A's
    order: Order  # of that model, assigned to `provider`, ordered from `quote`
    webhook: Webhook  # company A's, with one delivery
    quote: Quote  # company A's, of that model

    def callers(self) -> dict[str, Caller | None]:
        return {
            "anonymous": None,
            "a_admin": self.a_admin,
            "a_member": self.a_member,
            "b_admin": self.b_admin,
            "provider": self.provider,
            "other_provider": self.other_provider,
            "staff": self.staff,
        }


@pytest.fixture
async def world(api: Api) -> World:
    a_admin = await api.customer()
    company_a = await Company.get(id=a_admin.user.company_id)
    provider = await api.provider()
    model = await Model3D.create(
        company_id=company_a.id,
        owner_id=a_admin.user.id,
        name="bracket",
        file_name="b.stl",
        format="stl",
        object_key="models/matrix",
        wrapped_key="x",
        analysis_status=AnalysisStatus.DONE,
        upload_ip="198.51.100.9",
    )
    await Comment.create(model_id=model.id, author_id=a_admin.user.id, body="hi", ip="198.51.100.9")
    quote = await _quote(model)
    await offer_every_material(provider.user.company_id)
    # Its previews (issue 12): who may read Model.preview gets links, not null.
    await ModelPreview.create(
        model_id=model.id, glb_key="previews/matrix/glb", png_key="previews/matrix/png"
    )
    order = await Order.create(
        quote_id=quote.id,
        price=Decimal("21.00"),
        currency="EUR",
        model_id=model.id,
        customer_id=a_admin.user.id,
        company_id=company_a.id,
        provider_id=provider.user.company_id,
        status=OrderStatus.ASSIGNED,
        quantity=1,
        material="PLA",
        shipping_address=ADDRESS_DICT,
        billing_address=ADDRESS_DICT,
        billing_info="PO 4711",
        ip="198.51.100.9",
    )
    for status in (OrderStatus.REQUESTED, OrderStatus.ASSIGNED):
        await OrderEvent.create(
            order_id=order.id, status=status, by_id=a_admin.user.id, note="n", ip="198.51.100.9"
        )
    staff = await api.staff()
    webhook = await Webhook.create(
        company_id=company_a.id, url="https://hooks.example.com/pv", events=["order.assigned"],
        secret_sealed=webhook_endpoints.seal_secret(api.settings.secret_key, webhooks.new_secret()),
    )
    await WebhookDelivery.create(
        webhook_id=webhook.id, message_id=webhooks.new_message_id(), event="order.assigned",
        body="{}", attempt=1, status="DELIVERED", response_code=200,
    )
    return World(
        a_admin=a_admin,
        a_member=await api.member(company_a, Role.CUSTOMER, admin=False),
        b_admin=await api.customer(),
        provider=provider,
        other_provider=await api.provider(),
        staff=staff,
        model=model,
        order=order,
        webhook=webhook,
        quote=quote,
    )


async def _quote(model: Model3D) -> Quote:
    """A frozen quote as domain/quotes.py makes it (the price formula is tested elsewhere)."""
    material = seed_catalogue()["PLA"]
    now = datetime.now(UTC)
    part = PartFacts(issues=(), hull=HullSummary.from_dimensions(10, 20, 30), walls=None)
    draft = draft_quote(material, part, 6000.0, 1, now)
    return await Quote.create(
        model_id=model.id,
        company_id=model.company_id,
        material_code="PLA",
        snapshot=draft.to_dict(),
        created_at=draft.created_at,
        expires_at=draft.expires_at,
    )


def _viewer(caller: Caller | None) -> Viewer:
    return ANONYMOUS if caller is None else viewer_for(caller.user)


async def _no_providers(_model_id) -> frozenset:
    return frozenset()


def _providers_of(world: World):
    async def lookup(model_id) -> frozenset:
        return (
            frozenset({world.provider.user.company_id})
            if model_id == world.model.id
            else frozenset()
        )

    return lookup


def _fields_of(type_name: str) -> list[str]:
    return [key.split(".", 1)[1] for key in policy.RULES if key.startswith(type_name + ".")]


# Fields whose name is an object on one type and a scalar on another.
TYPED_NESTED = {"Quote.material": "{ code }"}


def _selection(field: str, type_name: str | None = None) -> str:
    if f"{type_name}.{field}" in TYPED_NESTED:
        return f"{field} {TYPED_NESTED[f'{type_name}.{field}']}"
    nested = {
        "address": "{ city }",
        "company": "{ id }",
        "members": "{ id }",
        "owner": "{ id }",
        "author": "{ id }",
        "model": "{ id }",
        "metadata": "{ volume }",
        "preview": "{ pngUrl }",
        "comments": "{ edges { cursor } }",
        "deliveries": "{ edges { cursor } }",
        "orders": "{ id }",
        "customer": "{ id }",
        "provider": "{ id }",
        "shippingAddress": "{ city }",
        "billingAddress": "{ city }",
        "history": "{ status }",
        "sessions": "{ id }",
        "apiTokens": "{ name }",
        "by": "{ id }",
        "actor": "{ id }",
        "quote": "{ id }",
        "materials": "{ code }",
        "breakdown": "{ label amount }",
        "issues": "{ code }",
        "buildVolume": "{ x }",
    }
    return f"{field} {nested.get(field, '')}"


def _field_outcome(body: dict[str, Any], field: str) -> str:
    errors = [e for e in body.get("errors") or [] if e.get("path", [None])[-1] == field]
    if errors:
        return errors[0]["extensions"]["code"]
    return "OK"


# --- User and Company fields ---------------------------------------------------------------
# (caller, subject, how the caller reaches the subject). Only reachable pairs have a path:
# the rest is covered by test_unreachable_objects_do_not_exist.
USER_PATHS = [
    ("a_member", "a_member", "{ me { %s } }", ("me",)),
    (
        "a_admin",
        "a_member",
        "{ me { company { members { id %s } } } }",
        ("me", "company", "members"),
    ),
    (
        "a_member",
        "a_admin",
        "{ me { company { members { id %s } } } }",
        ("me", "company", "members"),
    ),
    ("staff", "a_member", "{ users(first: 100) { edges { node { id %s } } } }", ("users", "edges")),
]


def _find_node(data: Any, path: tuple[str, ...], subject_id: str) -> Any:
    node = data
    for step in path:
        node = node[step] if node is not None else None
    if isinstance(node, list):
        items = [item.get("node", item) for item in node]
        return next((item for item in items if item and item.get("id") == subject_id), None)
    return node


@pytest.mark.parametrize("field", _fields_of("User"))
async def test_user_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    callers = world.callers()
    for caller_name, subject_name, template, path in USER_PATHS:
        caller, subject = callers[caller_name], callers[subject_name]
        assert caller is not None and subject is not None
        user = subject.user
        held = await policy.relations(
            _viewer(caller), Subject("User", user.id, company_id=user.company_id), _no_providers
        )
        expected = "OK" if policy.grants(policy.RULES[f"User.{field}"], held) else "FORBIDDEN"
        body = await api.gql(template % _selection(field), token=caller.token)
        outcome = _field_outcome(body, field)
        if outcome == "OK":
            assert _find_node(body["data"], path, str(user.id)) is not None or path == ("me",)
        assert outcome == expected, (caller_name, subject_name, field, body)


COMPANY_PATHS = [
    ("a_member", "{ me { company { %s } } }"),
    ("a_admin", "{ me { company { %s } } }"),
    ("provider", "{ me { company { %s } } }"),
    ("staff", "{ companies(first: 100) { edges { node { id %s } } } }"),
]


@pytest.mark.parametrize("field", _fields_of("Company"))
async def test_company_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    callers = world.callers()
    for caller_name, template in COMPANY_PATHS:
        caller = callers[caller_name]
        assert caller is not None
        company_id = caller.user.company_id or world.a_admin.user.company_id
        held = await policy.relations(
            _viewer(caller), Subject("Company", company_id, company_id=company_id), _no_providers
        )
        expected = "OK" if policy.grants(policy.RULES[f"Company.{field}"], held) else "FORBIDDEN"
        body = await api.gql(template % _selection(field), token=caller.token)
        assert _field_outcome(body, field) == expected, (caller_name, field, body)


async def test_unreachable_objects_do_not_exist(api: Api, world: World) -> None:
    """Another company's users appear nowhere: not as members, not by listing."""
    body = await api.ok("{ me { company { members { id } } } }", token=world.b_admin.token)
    ids = {m["id"] for m in body["me"]["company"]["members"]}
    assert str(world.a_member.user.id) not in ids and str(world.b_admin.user.id) in ids
    assert (
        await api.error_code("{ users { edges { node { id } } } }", token=world.b_admin.token)
        == "FORBIDDEN"
    )


# --- Model and Comment fields ---------------------------------------------------------------


@pytest.mark.parametrize("field", _fields_of("Model"))
async def test_model_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    subject = Subject("Model", world.model.id, company_id=world.model.company_id)
    for caller_name, caller in world.callers().items():
        if caller is None:
            continue
        held = await policy.relations(_viewer(caller), subject, _providers_of(world))
        body = await api.gql(
            "query($id: ID!) { model(id: $id) { %s } }" % _selection(field),
            {"id": str(world.model.id)},
            token=caller.token,
        )
        if not policy.grants(policy.REACH["Model"], held):
            assert body == {"data": {"model": None}}, (caller_name, field, body)
            continue
        expected = "OK" if policy.grants(policy.RULES[f"Model.{field}"], held) else "FORBIDDEN"
        assert _field_outcome(body, field) == expected, (caller_name, field, body)


async def test_model_preview_links_for_its_company_and_staff_only(
    api: Api, world: World
) -> None:
    subject = Subject("Model", world.model.id, company_id=world.model.company_id)
    query = "query($id: ID!) { model(id: $id) { preview { glbUrl pngUrl expiresAt } } }"
    granted = set()
    for caller_name, caller in world.callers().items():
        if caller is None:
            continue
        held = await policy.relations(_viewer(caller), subject, _providers_of(world))
        body = await api.gql(query, {"id": str(world.model.id)}, token=caller.token)
        model = (body.get("data") or {}).get("model")
        if policy.grants(policy.RULES["Model.preview"], held):
            granted.add(caller_name)
            assert model["preview"]["pngUrl"].startswith("/previews/"), (caller_name, body)
            assert model["preview"]["glbUrl"] != model["preview"]["pngUrl"]
        else:  # out of reach (null model) or a provider: null preview, never a link
            assert model is None or model["preview"] is None, (caller_name, body)
            assert "/previews/" not in str(body), (caller_name, body)
    assert "provider" not in granted and "staff" in granted, granted


async def test_a_provider_cannot_fetch_a_preview_even_with_a_link(api: Api, world: World) -> None:
    """The right is checked again at fetch: a link naming the provider (which the
    field never gives it) is refused, 404, and audited as not allowed."""
    from domain import preview_links
    from storage.models import AuditEvent
    from web.access import access_for

    access = access_for(viewer_for(world.provider.user), None)
    links = await preview_links.preview_links(api.settings, access, world.model)
    assert links is not None
    answer = await api.client.get(links.png_url)
    assert answer.status_code == 404
    refused = await AuditEvent.filter(kind="preview.link_refused").order_by("-id").first()
    assert refused is not None and refused.detail["reason"] == "not_allowed"
    assert refused.actor_id == world.provider.user.id


@pytest.mark.parametrize("field", _fields_of("Comment"))
async def test_comment_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    subject = Subject("Comment", world.model.id, company_id=world.model.company_id)
    for caller_name in ("a_admin", "a_member", "staff"):
        caller = world.callers()[caller_name]
        assert caller is not None
        held = await policy.relations(_viewer(caller), subject, _providers_of(world))
        expected = "OK" if policy.grants(policy.RULES[f"Comment.{field}"], held) else "FORBIDDEN"
        body = await api.gql(
            "query($id: ID!) { model(id: $id) { comments { edges { node { %s } } } } }"
            % _selection(field),
            {"id": str(world.model.id)},
            token=caller.token,
        )
        assert _field_outcome(body, field) == expected, (caller_name, field, body)


# --- Order, OrderEvent and AuditEvent fields ------------------------------------------------


@pytest.mark.parametrize("field", _fields_of("Order"))
async def test_order_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    subject = orders.subject_of(world.order)
    for caller_name, caller in world.callers().items():
        if caller is None:
            continue
        held = await policy.relations(_viewer(caller), subject, _providers_of(world))
        body = await api.gql(
            "query($id: ID!) { order(id: $id) { %s } }" % _selection(field, "Order"),
            {"id": str(world.order.id)},
            token=caller.token,
        )
        if not policy.grants(policy.REACH["Order"], held):
            assert body == {"data": {"order": None}}, (caller_name, field, body)
            continue
        expected = "OK" if policy.grants(policy.RULES[f"Order.{field}"], held) else "FORBIDDEN"
        assert _field_outcome(body, field) == expected, (caller_name, field, body)


@pytest.mark.parametrize("field", _fields_of("OrderEvent"))
async def test_order_event_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    """Events are reached through their order's history, by whoever reaches the order."""
    subject = orders.subject_of(world.order)
    for caller_name, caller in world.callers().items():
        if caller is None:
            continue
        held = await policy.relations(_viewer(caller), subject, _providers_of(world))
        body = await api.gql(
            "query($id: ID!) { order(id: $id) { history { %s } } }" % _selection(field),
            {"id": str(world.order.id)},
            token=caller.token,
        )
        if not policy.grants(policy.REACH["Order"], held):
            assert body == {"data": {"order": None}}, (caller_name, field, body)
            continue
        rule = policy.RULES[f"OrderEvent.{field}"]
        expected = "OK" if policy.grants(rule, held) else "FORBIDDEN"
        assert _field_outcome(body, field) == expected, (caller_name, field, body)
        if expected == "OK":  # a provider's history starts with its assignment
            steps = 1 if Rel.ASSIGNED_PROVIDER in held and Rel.STAFF not in held else 2
            assert len(body["data"]["order"]["history"]) == steps, body


@pytest.mark.parametrize("field", _fields_of("AuditEvent"))
async def test_audit_event_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    """The trail is reached only through auditLog: everyone else is refused at the root."""
    for caller_name, caller in world.callers().items():
        body = await api.gql(
            "{ auditLog(first: 5) { edges { node { id %s } } } }" % _selection(field),
            token=caller.token if caller else None,
        )
        viewer = _viewer(caller)
        if not policy.may_attempt(policy.RULES["Query.auditLog"], viewer):
            expected = "UNAUTHENTICATED" if caller is None else "FORBIDDEN"
            assert body["data"] is None, (caller_name, field, body)
            assert {e["extensions"]["code"] for e in body["errors"]} == {expected}
            continue
        nodes = [edge["node"] for edge in body["data"]["auditLog"]["edges"]]
        assert nodes, body
        held = await policy.relations(viewer, Subject("AuditEvent", 1), _no_providers)
        expected = "OK" if policy.grants(policy.RULES[f"AuditEvent.{field}"], held) else "FORBIDDEN"
        assert _field_outcome(body, field) == expected, (caller_name, field, body)


# --- Webhook and WebhookDelivery fields, subscriptions --------------------------------------


async def _webhook_fields(api: Api, world: World, type_name: str, field: str, template: str):
    subject = webhook_endpoints.subject_of(world.webhook)
    for caller_name, caller in world.callers().items():
        viewer = _viewer(caller)
        body = await api.gql(template % _selection(field), token=caller.token if caller else None)
        if not policy.may_attempt(policy.RULES["Query.webhooks"], viewer):
            expected = "UNAUTHENTICATED" if caller is None else "FORBIDDEN"
            assert {e["extensions"]["code"] for e in body["errors"]} == {expected}, body
            continue
        held = await policy.relations(viewer, subject, _no_providers)
        listed = {hook["id"]: hook for hook in body["data"]["webhooks"]}
        if not policy.grants(policy.REACH["Webhook"], held):
            assert str(world.webhook.id) not in listed, (caller_name, body)
            continue
        assert str(world.webhook.id) in listed, (caller_name, body)
        rule = policy.RULES[f"{type_name}.{field}"]
        expected = "OK" if policy.grants(rule, held) else "FORBIDDEN"
        assert _field_outcome(body, field) == expected, (caller_name, field, body)


@pytest.mark.parametrize("field", _fields_of("Webhook"))
async def test_webhook_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    await _webhook_fields(api, world, "Webhook", field, "{ webhooks { id %s } }")


@pytest.mark.parametrize("field", _fields_of("WebhookDelivery"))
async def test_webhook_delivery_fields_follow_the_policy(
    api: Api, world: World, field: str
) -> None:
    template = "{ webhooks { id deliveries { edges { node { %s } } } } }"
    await _webhook_fields(api, world, "WebhookDelivery", field, template)


async def test_subscription_events_follow_the_policy(api: Api, world: World) -> None:
    """What a subscriber is sent for one event is decided per caller at delivery time
    (domain lookups used by schema/live.py); the root rule decides who may subscribe."""
    event = await OrderEvent.filter(order_id=world.order.id).order_by("-id").first()
    assert event is not None
    order_message = {"orderId": str(world.order.id), "eventId": event.id}
    model_message = {"modelId": str(world.model.id)}
    for caller_name, caller in world.callers().items():
        viewer = _viewer(caller)
        access = policy.Access(viewer, _providers_of(world))
        order_held = await policy.relations(viewer, orders.subject_of(world.order),
                                            _providers_of(world))
        model_held = await policy.relations(
            viewer, Subject("Model", world.model.id, company_id=world.model.company_id),
            _providers_of(world),
        )
        for key, held, found in (
            ("Subscription.orderEvents", order_held, await orders.live_event(access, order_message)),
            ("Subscription.modelAnalysis", model_held,
             await model_files.live_model(access, model_message)),
        ):
            kind = "Order" if "order" in key else "Model"
            granted = policy.grants(policy.REACH[kind], held) and policy.grants(
                policy.RULES[key], held
            )
            assert (found is not None) == granted, (caller_name, key)
    # Who may subscribe at all (the root check at `subscribe`).
    assert not policy.may_attempt(policy.RULES["Subscription.orderEvents"], ANONYMOUS)
    assert policy.may_attempt(
        policy.RULES["Subscription.modelAnalysis"], _viewer(world.a_member)
    )
    assert not policy.may_attempt(
        policy.RULES["Subscription.modelAnalysis"], _viewer(world.provider)
    )
# --- Quote, Material and QuoteLine fields (issue 9) ------------------------------------------


@pytest.mark.parametrize("field", _fields_of("Quote"))
async def test_quote_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    subject = quoting.subject_of(world.quote)
    for caller_name, caller in world.callers().items():
        if caller is None:
            continue
        held = await policy.relations(_viewer(caller), subject, _providers_of(world))
        body = await api.gql(
            "query($id: ID!) { quote(id: $id) { %s } }" % _selection(field, "Quote"),
            {"id": str(world.quote.id)},
            token=caller.token,
        )
        if not policy.may_attempt(policy.RULES["Query.quote"], _viewer(caller)):
            assert body["data"] == {"quote": None}, (caller_name, field, body)  # refused at root
            assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
            continue
        if not policy.grants(policy.REACH["Quote"], held):
            assert body == {"data": {"quote": None}}, (caller_name, field, body)
            continue
        expected = "OK" if policy.grants(policy.RULES[f"Quote.{field}"], held) else "FORBIDDEN"
        assert _field_outcome(body, field) == expected, (caller_name, field, body)


def _schema_fields(type_name: str) -> list[str]:
    return sorted(SCHEMA._schema.type_map[type_name].fields)


@pytest.mark.parametrize("field", _schema_fields("Material"))
async def test_material_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    """Material is a value: every field for whoever reaches one (every signed-in user
    through `materials`, a company's members through Company.materials)."""
    rule = policy.rule_for(f"Material.{field}")
    assert rule is not None
    for caller_name, caller in world.callers().items():
        body = await api.gql(
            "{ materials { %s } }" % _selection(field), token=caller.token if caller else None
        )
        if caller is None:
            assert body["data"] is None and body["errors"][0]["extensions"]["code"] == (
                "UNAUTHENTICATED"
            )
            continue
        expected = "OK" if policy.grants(rule, frozenset({Rel.EVERYONE})) else "FORBIDDEN"
        assert _field_outcome(body, field) == expected, (caller_name, field, body)
        assert len(body["data"]["materials"]) >= 9, body  # the seeded catalogue
    body = await api.ok(
        "{ me { company { materials { %s } } } }" % _selection(field), token=world.provider.token
    )
    assert body["me"]["company"]["materials"], body


@pytest.mark.parametrize("field", _schema_fields("QuoteLine"))
async def test_quote_line_fields_follow_the_policy(api: Api, world: World, field: str) -> None:
    for caller_name in ("a_admin", "a_member", "staff"):
        caller = world.callers()[caller_name]
        assert caller is not None
        body = await api.gql(
            "query($id: ID!) { quote(id: $id) { breakdown { %s } } }" % field,
            {"id": str(world.quote.id)},
            token=caller.token,
        )
        assert _field_outcome(body, field) == "OK", (caller_name, field, body)
        assert body["data"]["quote"]["breakdown"], body


async def test_inactive_materials_are_staffs(api: Api, world: World) -> None:
    document = "{ materials(includeInactive: true) { code active } }"
    listed = (await api.ok(document, token=world.staff.token))["materials"]
    assert {"code": "PA12", "active": False} in listed
    for caller in (world.a_admin, world.provider):
        assert await api.error_code(document, token=caller.token) == "FORBIDDEN"


# --- Root operations -----------------------------------------------------------------------
# One document per root field. For callers the policy admits, the answer may be any
# outcome but a permission error; for the others it must be one.
def _operations(world: World) -> dict[str, tuple[str, dict[str, Any]]]:
    company_a = str(world.a_admin.user.company_id)
    model = str(world.model.id)
    order = str(world.order.id)
    return {
        "Query.me": ("{ me { id } }", {}),
        "Query.users": ("{ users { edges { node { id } } } }", {}),
        "Query.companies": ("{ companies { edges { node { id } } } }", {}),
        "Mutation.signUp": (
            "mutation($i: SignUpInput!) { signUp(input: $i) { token } }",
            {
                "i": {
                    "email": "not-an-email",
                    "password": PASSWORD,
                    "firstName": "A",
                    "lastName": "B",
                    "companyName": "C",
                    "address": ADDRESS,
                }
            },
        ),
        "Mutation.logIn": (
            "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }",
            {"e": world.a_member.user.email, "p": PASSWORD},
        ),
        "Mutation.logOut": ("mutation { logOut }", {}),
        "Mutation.beginTotpEnrollment": ("mutation { beginTotpEnrollment { secret } }", {}),
        "Mutation.confirmTotpEnrollment": (
            'mutation { confirmTotpEnrollment(code: "000000") }',
            {},
        ),
        "Mutation.createCompany": (
            'mutation { createCompany(name: "", kind: PRINT_SERVICE) { id } }',
            {},
        ),
        "Mutation.inviteUser": (
            'mutation($c: ID!) { inviteUser(email: "bad", role: CUSTOMER, companyId: $c) { token } }',
            {"c": company_a},
        ),
        "Mutation.acceptInvitation": (
            'mutation { acceptInvitation(token: "x", password: "x", firstName: "a", lastName: "b") { token } }',
            {},
        ),
        "Mutation.createApiToken": ('mutation { createApiToken(name: "") }', {}),
        "Query.model": ("query($m: ID!) { model(id: $m) { id } }", {"m": model}),
        "Query.models": ("{ models { edges { node { id } } } }", {}),
        "Mutation.uploadModel": (
            "mutation($f: Upload!) { uploadModel(file: $f) { id } }",
            {"f": "x"},
        ),
        "Mutation.deleteModel": (
            "mutation($m: ID!) { deleteModel(id: $m) }",
            {"m": str(uuid.uuid4())},
        ),
        "Mutation.addComment": (
            'mutation($m: ID!) { addComment(modelId: $m, body: "") { id } }',
            {"m": model},
        ),
        "Mutation.requestDownload": (
            "mutation($m: ID!) { requestDownload(modelId: $m) { url } }",
            {"m": model},
        ),
        "Mutation.revokeApiToken": ('mutation { revokeApiToken(name: "none") }', {}),
        "Mutation.exportMyData": ("mutation { exportMyData }", {}),
        "Mutation.deleteMyAccount": (
            'mutation { deleteMyAccount(password: "wrong password 99") }',
            {},
        ),
        "Query.order": ("query($o: ID!) { order(id: $o) { id } }", {"o": order}),
        "Query.orders": ("{ orders { edges { node { id } } } }", {}),
        "Query.auditLog": ("{ auditLog { edges { node { id } } } }", {}),
        "Mutation.requestOrder": (
            "mutation($i: OrderInput!) { requestOrder(input: $i) { id } }",
            {
                "i": {
                    "modelId": model,
                    "quantity": 0,  # refused as input by whoever may order: nothing changes
                    "material": "PLA",
                    "shippingAddress": ADDRESS,
                    "billingAddress": ADDRESS,
                }
            },
        ),
        "Mutation.assignOrder": (
            "mutation($o: ID!, $c: ID!) { assignOrder(orderId: $o, providerCompanyId: $c) { id } }",
            {"o": str(uuid.uuid4()), "c": company_a},
        ),
        "Mutation.updateOrderStatus": (
            "mutation($o: ID!) { updateOrderStatus(orderId: $o, status: DELIVERED) { id } }",
            {"o": order},  # an invalid step from ASSIGNED for everyone: nothing changes
        ),
        "Query.materials": ("{ materials { code } }", {}),
        "Query.quote": ("query($q: ID!) { quote(id: $q) { id } }", {"q": str(world.quote.id)}),
        "Mutation.upsertMaterial": (
            "mutation($i: MaterialInput!) { upsertMaterial(input: $i) { id } }",
            {"i": {**MATERIAL_INPUT, "minWallMm": -1}},  # refused as input: nothing changes
        ),
        "Mutation.setProviderMaterials": (
            "mutation($c: ID!) { setProviderMaterials(companyId: $c, materialCodes: []) { id } }",
            {"c": company_a},  # not a print service: refused as input
        ),
        "Mutation.createQuote": (
            'mutation($m: ID!) { createQuote(modelId: $m, materialCode: "PLA", quantity: 0) '
            "{ id } }",
            {"m": model},  # quantity 0: refused as input
        ),
        # Accounts (issue 10): each refused as input, so nothing changes.
        "Mutation.changePassword": (
            'mutation { changePassword(currentPassword: "wrong password 99", newPassword: "x") }',
            {},
        ),
        "Mutation.requestPasswordReset": ('mutation { requestPasswordReset(email: "bad") }', {}),
        "Mutation.resetPassword": (
            'mutation { resetPassword(token: "x", newPassword: "x") { token } }',
            {},
        ),
        "Mutation.verifyEmail": ('mutation { verifyEmail(token: "x") }', {}),
        "Mutation.revokeSession": ('mutation { revokeSession(id: "0") }', {}),
        "Mutation.revokeInvitation": (
            'mutation($c: ID!) { revokeInvitation(email: "bad", companyId: $c) }',
            {"c": company_a},
        ),
        "Mutation.regenerateRecoveryCodes": (
            'mutation { regenerateRecoveryCodes(password: "wrong password 99", otp: "000000") }',
            {},
        ),
        "Query.webhooks": ("{ webhooks { id } }", {}),
        "Mutation.createWebhook": (  # a URL refused for everyone: nothing is registered
            'mutation { createWebhook(url: "ftp://x.example", events: ["order.assigned"]) '
            "{ secret } }",
            {},
        ),
        "Mutation.deleteWebhook": (
            "mutation($w: ID!) { deleteWebhook(id: $w) }",
            {"w": str(uuid.uuid4())},
        ),
        "Mutation.redeliverWebhook": (
            "mutation($d: ID!) { redeliverWebhook(deliveryId: $d) }",
            {"d": "0"},
        ),
        "Mutation.setOrderNotices": ("mutation { setOrderNotices(enabled: true) }", {}),
    }


async def test_root_operations_follow_the_policy(api: Api, world: World) -> None:
    operations = _operations(world)
    root_rules = [key for key in policy.RULES if key.split(".")[0] in ("Query", "Mutation")]
    # Log-out ends the sessions the other checks use: it goes last.
    root_rules.sort(key=lambda key: key == "Mutation.logOut")
    assert sorted(operations) == sorted(root_rules), "every root rule needs a document here"
    for key in root_rules:
        document, variables = operations[key]
        for caller_name, caller in world.callers().items():
            allowed = policy.may_attempt(policy.RULES[key], _viewer(caller))
            body = await api.gql(document, variables, token=caller.token if caller else None)
            codes = {e["extensions"]["code"] for e in body.get("errors") or []}
            if allowed:
                assert not codes & DENIED, (key, caller_name, body)
            else:
                expected = "UNAUTHENTICATED" if caller is None else "FORBIDDEN"
                assert codes == {expected}, (key, caller_name, body)
    # The documents above change nothing: the order is where the world left it.
    assert (await Order.get(id=world.order.id)).status == OrderStatus.ASSIGNED
    assert await Quote.all().count() == 1 and not await MaterialRow.filter(code="MATRIX").exists()


# --- The policy table against shared/API.md's access table ---------------------------------
# Transcribed from the contract: (rule, who is granted) for the rows implemented so far.
OWN, PROV = Rel.SAME_COMPANY, Rel.ASSIGNED_PROVIDER
CONTRACT = {
    "Model.metadata": {OWN, Rel.STAFF},
    "Model.comments": {OWN, Rel.STAFF},
    "Model.owner": {OWN, Rel.STAFF},
    "Model.id": {OWN, PROV, Rel.STAFF},
    "Model.name": {OWN, PROV, Rel.STAFF},
    "Model.fileName": {OWN, PROV, Rel.STAFF},
    "Mutation.requestDownload": {OWN, PROV, Rel.STAFF},
    "Mutation.uploadModel": {Rel.CUSTOMER, Rel.STAFF},
    "Mutation.deleteModel": {OWN, Rel.STAFF},
    "Mutation.addComment": {OWN, Rel.STAFF},
    "Model.uploadIp": {Rel.STAFF},
    # "see a model: ..., preview": customer (same company) and staff; a provider does not.
    "Model.preview": {OWN, Rel.STAFF},
    "Comment.ip": {Rel.STAFF},
    "Query.users": {Rel.STAFF},
    "Query.companies": {Rel.STAFF},
    "Mutation.createCompany": {Rel.STAFF},
    "User.signupIp": {Rel.STAFF},
    "User.email": {Rel.SELF, Rel.COMPANY_ADMIN, Rel.STAFF},
    "User.phone": {Rel.SELF, Rel.COMPANY_ADMIN, Rel.STAFF},
    "User.address": {Rel.SELF, Rel.COMPANY_ADMIN, Rel.STAFF},
    # "requestOrder": the model's company only; not even staff order for customers.
    "Mutation.requestOrder": {OWN},
    # "see an order (incl. shipping address)"
    "Query.order": {OWN, PROV, Rel.STAFF},
    "Query.orders": {OWN, PROV, Rel.STAFF},
    "Order.id": {OWN, PROV, Rel.STAFF},
    "Order.status": {OWN, PROV, Rel.STAFF},
    "Order.shippingAddress": {OWN, PROV, Rel.STAFF},
    "Order.history": {OWN, PROV, Rel.STAFF},
    "Model.orders": {OWN, PROV, Rel.STAFF},
    # "updateOrderStatus": every party to the order; which step is order_states' table.
    "Mutation.updateOrderStatus": {OWN, PROV, Rel.STAFF},
    "Mutation.assignOrder": {Rel.STAFF},
    # IP addresses: staff only.
    "Order.ip": {Rel.STAFF},
    "OrderEvent.ip": {Rel.STAFF},
    "AuditEvent.ip": {Rel.STAFF},
    "Query.auditLog": {Rel.STAFF},
    # Additions of 2026-11-30: materials for any signed-in user, kept by staff; a quote for
    # the model's company; prices for the customer's company and staff, not the provider.
    "Query.materials": {Rel.AUTHENTICATED},
    "Mutation.upsertMaterial": {Rel.STAFF},
    "Mutation.setProviderMaterials": {Rel.STAFF},
    "Mutation.createQuote": {OWN},
    "Order.price": {OWN, Rel.STAFF},
    "Order.currency": {OWN, Rel.STAFF},
    # Additions of 2026-11-30: "sessions apiTokens emailVerified ... # self only".
    "User.sessions": {Rel.SELF},
    "User.apiTokens": {Rel.SELF},
    "User.emailVerified": {Rel.SELF},
    "Mutation.revokeInvitation": {Rel.COMPANY_ADMIN, Rel.STAFF},
    # Additions of 2026-11-30: "webhooks: the caller's company's (admin), all (staff)",
    # "createWebhook: company admin, staff".
    "Query.webhooks": {Rel.COMPANY_ADMIN, Rel.STAFF},
    "Mutation.createWebhook": {Rel.COMPANY_ADMIN, Rel.STAFF},
}


@pytest.mark.parametrize("key", sorted(CONTRACT))
def test_contract_rows_match_the_policy_table(key: str) -> None:
    assert set(policy.RULES[key]) == CONTRACT[key]


def test_contract_ip_addresses_for_staff_only_everywhere() -> None:
    ip_fields = [key for key in policy.RULES if key.endswith((".ip", "Ip"))]
    assert len(ip_fields) >= 6, ip_fields
    assert {key: set(policy.RULES[key]) for key in ip_fields} == {
        key: {Rel.STAFF} for key in ip_fields
    }


def test_contract_invitations() -> None:
    """inviteUser: staff (any role, company) or a company admin (checked in the domain)."""
    assert set(policy.RULES["Mutation.inviteUser"]) == {Rel.COMPANY_ADMIN, Rel.STAFF}


def test_provider_company_kind_for_fixture() -> None:
    assert CompanyKind.PRINT_SERVICE.value == "PRINT_SERVICE"
