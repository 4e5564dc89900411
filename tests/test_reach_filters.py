"""The policy's list filters select exactly what `can_reach` allows.

`policy.reach_filter(kind, viewer)` is the query form of REACH, used by every
list (models, orders, users, companies, auditLog), the provider lookup of the
loaders and the invitation check. For every kind and every kind of caller, the
rows the filter selects must be exactly the rows `Access.can_reach` grants one
by one; the world below has a row of each kind on each side of every relation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from domain import model_files, orders, policy, quoting, webhook_endpoints
from domain.auth import viewer_for
from domain.enums import CompanyKind, Role
from domain.order_states import OrderStatus
from domain.policy import ANONYMOUS, Access, Subject, Viewer
from storage.models import AuditEvent, Comment, Company, Model3D, Order, Quote, User, Webhook
from tests.helpers import ADDRESS_DICT

pytestmark = pytest.mark.db


async def _user(company: Company | None, role: Role, admin: bool = False) -> User:
    return await User.create(
        email=f"{role.lower()}-{uuid4().hex[:10]}@example.com",
        first_name="R",
        last_name="F",
        role=role,
        company=company,
        is_company_admin=admin,
        password_hash="x",
    )


async def _model(company: Company, owner: User) -> Model3D:
    return await Model3D.create(
        company_id=company.id, owner_id=owner.id, name="m", file_name="m.stl", format="stl",
        object_key=f"models/{owner.id}", wrapped_key="x", analysis_status="DONE",
    )


async def _order(model: Model3D, customer: User, provider: Company | None, status: OrderStatus) -> Order:
    return await Order.create(
        model_id=model.id, customer_id=customer.id, company_id=model.company_id,
        provider_id=provider.id if provider else None, status=status, quantity=1,
        material="PLA", shipping_address=ADDRESS_DICT, billing_address=ADDRESS_DICT,
    )


@pytest.fixture
async def world(database: str) -> dict[str, Viewer]:
    a = await Company.create(name="A", kind=CompanyKind.CUSTOMER)
    b = await Company.create(name="B", kind=CompanyKind.CUSTOMER)
    p1 = await Company.create(name="P1", kind=CompanyKind.PRINT_SERVICE)
    p2 = await Company.create(name="P2", kind=CompanyKind.PRINT_SERVICE)
    await Company.create(name="Nobody's", kind=CompanyKind.CUSTOMER)
    callers = {
        "a_admin": await _user(a, Role.CUSTOMER, admin=True),
        "a_member": await _user(a, Role.CUSTOMER),
        "b_admin": await _user(b, Role.CUSTOMER, admin=True),
        "p1": await _user(p1, Role.PROVIDER),
        "p2_admin": await _user(p2, Role.PROVIDER, admin=True),
        "staff": await _user(None, Role.STAFF),
    }
    model_a = await _model(a, callers["a_admin"])
    model_a2 = await _model(a, callers["a_member"])
    model_b = await _model(b, callers["b_admin"])
    await _order(model_a, callers["a_admin"], p1, OrderStatus.IN_PRODUCTION)  # p1 holds it
    await _order(model_a2, callers["a_member"], p2, OrderStatus.DECLINED)  # p2 does not
    await _order(model_b, callers["b_admin"], p2, OrderStatus.SHIPPED)  # p2 holds it
    await _order(model_b, callers["b_admin"], p1, OrderStatus.DELIVERED)  # p1 held it once
    await _order(model_b, callers["b_admin"], None, OrderStatus.REQUESTED)
    for model, author in ((model_a, callers["a_member"]), (model_b, callers["b_admin"])):
        await Comment.create(model_id=model.id, author_id=author.id, body="c")
    for model in (model_a, model_b):
        await Quote.create(
            model_id=model.id, company_id=model.company_id, material_code="PLA", snapshot={},
            created_at=datetime.now(UTC), expires_at=datetime.now(UTC),
        )
    await AuditEvent.create(kind="login", actor_id=callers["a_admin"].id)
    await AuditEvent.create(kind="login", actor_id=callers["staff"].id)
    for owner in (a, b, p2, None):  # None: the platform's own endpoint (staff)
        await Webhook.create(company_id=owner.id if owner else None, url="https://h.example/x",
                             events=["order.assigned"], secret_sealed="x")
    viewers = {name: viewer_for(user) for name, user in callers.items()}
    return {"anonymous": ANONYMOUS, **viewers}


async def _providers_of_model(model_id: UUID) -> frozenset[UUID]:
    """Computed row by row in Python, independently of the filters under test."""
    rows = await Order.filter(model_id=model_id)
    return frozenset(
        holder for row in rows if (holder := policy.order_holder(row.provider_id, row.status))
    )


async def _subjects(kind: str) -> list[Subject]:
    if kind == "User":
        return [Subject("User", u.id, company_id=u.company_id) for u in await User.all()]
    if kind == "Company":
        return [Subject("Company", c.id, company_id=c.id) for c in await Company.all()]
    if kind == "Model":
        return [model_files.subject_of(m) for m in await Model3D.all()]
    if kind == "Comment":
        found = []
        for comment in await Comment.all():
            model = await Model3D.get(id=comment.model_id)
            found.append(Subject("Comment", comment.id, company_id=model.company_id))
        return found
    if kind == "Order":
        return [orders.subject_of(o) for o in await Order.all()]
    if kind == "AuditEvent":
        return [Subject("AuditEvent", e.id) for e in await AuditEvent.all()]
    if kind == "Webhook":
        return [webhook_endpoints.subject_of(w) for w in await Webhook.all()]
    if kind == "Quote":
        return [quoting.subject_of(q) for q in await Quote.all()]
    raise AssertionError(f"no subjects for {kind}")


TABLES = {
    "User": User, "Company": Company, "Model": Model3D,
    "Comment": Comment, "Order": Order, "AuditEvent": AuditEvent, "Webhook": Webhook,
    "Quote": Quote,
}


@pytest.mark.parametrize("kind", sorted(policy.REACH))
async def test_reach_filter_selects_exactly_what_can_reach_allows(
    world: dict[str, Viewer], kind: str
) -> None:
    subjects = await _subjects(kind)
    assert subjects, f"the world has no {kind}"
    seen_some = seen_none = False
    for name, viewer in world.items():
        access = Access(viewer, _providers_of_model)
        expected = {s.id for s in subjects if await access.can_reach(s)}
        selected = set(
            await TABLES[kind].filter(policy.reach_filter(kind, viewer)).values_list("id", flat=True)
        )
        assert selected == expected, (kind, name)
        seen_some |= bool(expected) and expected != {s.id for s in subjects}
        seen_none |= not expected
    # The world is rich enough to tell the filters apart: some caller sees part of the rows.
    assert seen_none and (seen_some or kind == "AuditEvent")
