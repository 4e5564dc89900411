"""Who may do what: the access table of shared/API.md, as data.

Every GraphQL field and operation has one rule here, keyed `Type.field`: the
set of relations between the caller and the object that grant it. A field
without a rule is refused (deny by default); `tests/test_policy_coverage.py`
fails when a schema field has no rule, and `tests/test_access_matrix.py`
walks every rule for every kind of caller.

Permission classes (schema/permissions.py) and domain functions only ask this
module; none re-implements a rule. Lists ask it too: `reach_filter(kind, viewer)`
is REACH as a query condition (tests/test_reach_filters.py checks it against
`can_reach` for every kind and caller).
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import reduce
from uuid import UUID

from tortoise.expressions import Q, Subquery

from domain import audit
from domain.errors import Forbidden, NotFound, Unauthenticated
from domain.order_states import OrderStatus
from storage.models import Order

# Statuses in which the assigned provider holds an order, and so may see it and fetch
# its model's file. A provider that declined, or whose order was cancelled or
# delivered, holds it no more.
PROVIDER_ACTIVE_STATUSES = (
    OrderStatus.ASSIGNED,
    OrderStatus.ACCEPTED,
    OrderStatus.IN_PRODUCTION,
    OrderStatus.SHIPPED,
)


class Rel(StrEnum):
    """A relation between the caller and an object (or, on root fields, the caller alone)."""

    EVERYONE = "everyone"  # anonymous included
    AUTHENTICATED = "authenticated"
    CUSTOMER = "customer"  # role only, no object needed
    PROVIDER = "provider"
    STAFF = "staff"
    SELF = "self"  # the user object is the caller
    COMPANY_MEMBER = "company_member"  # caller belongs to the object's company
    COMPANY_ADMIN = "company_admin"  # caller administers the object's company
    SAME_COMPANY = "same_company"  # a customer of the company that owns the model/order
    ASSIGNED_PROVIDER = "assigned_provider"  # a member of the provider assigned to it


E, A, S = Rel.EVERYONE, Rel.AUTHENTICATED, Rel.STAFF
OWN, PROV = Rel.SAME_COMPANY, Rel.ASSIGNED_PROVIDER
SELF, MEMBER, ADMIN = Rel.SELF, Rel.COMPANY_MEMBER, Rel.COMPANY_ADMIN


def _rules(*relations: Rel) -> frozenset[Rel]:
    return frozenset(relations)


# --- The access table --------------------------------------------------------------------
# Read as: "this field may be read / this operation done by ...". Staff is listed
# explicitly where the contract grants it; nothing is implied.
RULES: dict[str, frozenset[Rel]] = {
    # Queries
    "Query.me": _rules(E),
    "Query.model": _rules(OWN, PROV, S),
    "Query.models": _rules(OWN, PROV, S),
    "Query.users": _rules(S),
    "Query.companies": _rules(S),
    "Query.order": _rules(OWN, PROV, S),
    "Query.orders": _rules(OWN, PROV, S),
    "Query.auditLog": _rules(S),
    # Mutations: accounts
    "Mutation.signUp": _rules(E),
    "Mutation.logIn": _rules(E),
    "Mutation.logOut": _rules(A),
    "Mutation.beginTotpEnrollment": _rules(A),
    "Mutation.confirmTotpEnrollment": _rules(A),
    "Mutation.createCompany": _rules(S),
    "Mutation.inviteUser": _rules(ADMIN, S),
    "Mutation.acceptInvitation": _rules(E),
    "Mutation.createApiToken": _rules(A),
    "Mutation.revokeApiToken": _rules(A),
    "Mutation.exportMyData": _rules(A),
    "Mutation.deleteMyAccount": _rules(A),
    # Mutations: models (contract rows "uploadModel, deleteModel", "addComment", "requestDownload")
    "Mutation.uploadModel": _rules(Rel.CUSTOMER, S),
    "Mutation.deleteModel": _rules(OWN, S),
    "Mutation.addComment": _rules(OWN, S),
    "Mutation.requestDownload": _rules(OWN, PROV, S),
    # Mutations: orders. A print request comes from the model's company only (staff
    # do not order for customers); which status step each may take is the state
    # machine's business (domain/order_states.py), on top of these rules.
    "Mutation.requestOrder": _rules(OWN),
    "Mutation.assignOrder": _rules(S),
    "Mutation.updateOrderStatus": _rules(OWN, PROV, S),
    # User: names for colleagues; contact data for self, company admin and staff.
    "User.id": _rules(SELF, MEMBER, S),
    "User.firstName": _rules(SELF, MEMBER, S),
    "User.lastName": _rules(SELF, MEMBER, S),
    "User.role": _rules(SELF, MEMBER, S),
    "User.company": _rules(SELF, MEMBER, S),
    "User.createdAt": _rules(SELF, MEMBER, S),
    "User.isCompanyAdmin": _rules(SELF, MEMBER, S),
    "User.email": _rules(SELF, ADMIN, S),
    "User.phone": _rules(SELF, ADMIN, S),
    "User.address": _rules(SELF, ADMIN, S),
    "User.mfaEnabled": _rules(SELF, ADMIN, S),
    "User.signupIp": _rules(S),
    # Company
    "Company.id": _rules(MEMBER, S),
    "Company.name": _rules(MEMBER, S),
    "Company.kind": _rules(MEMBER, S),
    "Company.address": _rules(MEMBER, S),
    "Company.members": _rules(MEMBER, S),
    # Model: the provider assigned to an order sees what it needs to print, nothing more.
    "Model.id": _rules(OWN, PROV, S),
    "Model.name": _rules(OWN, PROV, S),
    "Model.fileName": _rules(OWN, PROV, S),
    "Model.createdAt": _rules(OWN, S),
    "Model.owner": _rules(OWN, S),
    "Model.company": _rules(OWN, S),
    "Model.analysisStatus": _rules(OWN, S),
    "Model.analysisError": _rules(OWN, S),
    "Model.metadata": _rules(OWN, S),
    "Model.comments": _rules(OWN, S),
    "Model.orders": _rules(OWN, PROV, S),  # and each order only if the caller reaches it
    "Model.uploadIp": _rules(S),
    "Model.preview": _rules(OWN, S),  # issue 12: a provider does not see it
    # Comment: reachable with its model; the author's IP for staff only.
    "Comment.id": _rules(OWN, S),
    "Comment.model": _rules(OWN, S),
    "Comment.author": _rules(OWN, S),
    "Comment.body": _rules(OWN, S),
    "Comment.createdAt": _rules(OWN, S),
    "Comment.ip": _rules(S),
    # Order: what the provider needs to print and ship, nothing more. The customer
    # (a person) and the billing data are the customer's business and staff's: the
    # provider ships to `shippingAddress` and invoices the platform, not the customer.
    # The provider's identity is staff's and the provider's own: the platform brokers.
    "Order.id": _rules(OWN, PROV, S),
    "Order.model": _rules(OWN, PROV, S),
    "Order.status": _rules(OWN, PROV, S),
    "Order.quantity": _rules(OWN, PROV, S),
    "Order.material": _rules(OWN, PROV, S),
    "Order.shippingAddress": _rules(OWN, PROV, S),
    "Order.history": _rules(OWN, PROV, S),
    "Order.createdAt": _rules(OWN, PROV, S),
    "Order.nextSteps": _rules(OWN, PROV, S),
    "Order.customer": _rules(OWN, S),
    "Order.billingAddress": _rules(OWN, S),
    "Order.billingInfo": _rules(OWN, S),
    "Order.provider": _rules(PROV, S),
    "Order.ip": _rules(S),
    # OrderEvent: reachable with its order. Who acted (a person of another company,
    # or staff) and from where is staff's business; the others see what and when.
    "OrderEvent.status": _rules(OWN, PROV, S),
    "OrderEvent.at": _rules(OWN, PROV, S),
    "OrderEvent.note": _rules(OWN, PROV, S),
    "OrderEvent.by": _rules(S),
    "OrderEvent.ip": _rules(S),
    # The audit trail: staff only, every field.
    "AuditEvent.id": _rules(S),
    "AuditEvent.at": _rules(S),
    "AuditEvent.kind": _rules(S),
    "AuditEvent.actor": _rules(S),
    "AuditEvent.actorId": _rules(S),
    "AuditEvent.companyId": _rules(S),
    "AuditEvent.modelId": _rules(S),
    "AuditEvent.orderId": _rules(S),
    "AuditEvent.ip": _rules(S),
    "AuditEvent.detail": _rules(S),
    # Materials and quotes (issue 9). The catalogue is public to every signed-in user
    # (inactive materials: staff, checked in domain/catalogue.py); staff keep it and
    # say what each print service offers. A quote is its model's company's business
    # (and staff's); the provider prints from the order and never sees prices.
    "Query.materials": _rules(A),
    "Query.quote": _rules(OWN, S),
    "Mutation.upsertMaterial": _rules(S),
    "Mutation.setProviderMaterials": _rules(S),
    "Mutation.createQuote": _rules(OWN),
    "Company.materials": _rules(MEMBER, S),
    "Order.quote": _rules(OWN, S),
    "Order.price": _rules(OWN, S),
    "Order.currency": _rules(OWN, S),
    "Quote.id": _rules(OWN, S),
    "Quote.model": _rules(OWN, S),
    "Quote.material": _rules(OWN, S),
    "Quote.quantity": _rules(OWN, S),
    "Quote.unitPrice": _rules(OWN, S),
    "Quote.total": _rules(OWN, S),
    "Quote.currency": _rules(OWN, S),
    "Quote.breakdown": _rules(OWN, S),
    "Quote.printable": _rules(OWN, S),
    "Quote.issues": _rules(OWN, S),
    "Quote.estimatedPrintHours": _rules(OWN, S),
    "Quote.leadTimeDays": _rules(OWN, S),
    "Quote.createdAt": _rules(OWN, S),
    "Quote.expiresAt": _rules(OWN, S),
    "Material.*": _rules(E),
    "QuoteLine.*": _rules(E),
    # Plain value types: whoever may read the field that holds them may read them whole.
    "Address.*": _rules(E),
    "Dimensions.*": _rules(E),
    "Printability.*": _rules(E),
    "PrintabilityIssue.*": _rules(E),
    "ModelMetadata.*": _rules(E),
    "DownloadLink.*": _rules(E),
    "Preview.*": _rules(E),
    "AuthPayload.*": _rules(E),
    "TotpSetup.*": _rules(E),
    "Invitation.*": _rules(E),
    "PageInfo.*": _rules(E),
    # Connections only carry objects whose own fields are checked.
    "*Connection.*": _rules(E),
    "*Edge.*": _rules(E),
    # Accounts (issue 10). Credential changes also refuse API tokens and stale sessions
    # (domain/credentials.py); a user's sessions and tokens are their own business only.
    "Mutation.changePassword": _rules(A),
    "Mutation.requestPasswordReset": _rules(E),
    "Mutation.resetPassword": _rules(E),
    "Mutation.verifyEmail": _rules(E),
    "Mutation.revokeSession": _rules(A),
    "Mutation.revokeInvitation": _rules(ADMIN, S),
    "Mutation.regenerateRecoveryCodes": _rules(A),
    "User.sessions": _rules(SELF),
    "User.apiTokens": _rules(SELF),
    "User.emailVerified": _rules(SELF),
    "Session.*": _rules(E),
    "ApiTokenInfo.*": _rules(E),
    # Issue 11. Subscriptions: asked at subscribe, and again for every event (Access.may):
    # an order's steps for whoever reaches the order, a model's analysis for its company.
    "Subscription.orderEvents": _rules(OWN, PROV, S),
    "Subscription.modelAnalysis": _rules(OWN, S),
    # Webhooks: a company's admins manage its endpoints; staff, all (and the platform's).
    "Query.webhooks": _rules(ADMIN, S),
    "Mutation.createWebhook": _rules(ADMIN, S),
    "Mutation.deleteWebhook": _rules(ADMIN, S),
    "Mutation.redeliverWebhook": _rules(ADMIN, S),
    "Webhook.id": _rules(ADMIN, S),
    "Webhook.url": _rules(ADMIN, S),
    "Webhook.events": _rules(ADMIN, S),
    "Webhook.active": _rules(ADMIN, S),
    "Webhook.createdAt": _rules(ADMIN, S),
    "Webhook.deliveries": _rules(ADMIN, S),
    "WebhookDelivery.id": _rules(ADMIN, S),
    "WebhookDelivery.event": _rules(ADMIN, S),
    "WebhookDelivery.attempt": _rules(ADMIN, S),
    "WebhookDelivery.status": _rules(ADMIN, S),
    "WebhookDelivery.responseCode": _rules(ADMIN, S),
    "WebhookDelivery.at": _rules(ADMIN, S),
    "WebhookCreated.*": _rules(E),  # only ever returned to its creator
    # E-mail notices: each user decides for themself.
    "User.orderNotices": _rules(SELF),
    "Mutation.setOrderNotices": _rules(A),
}

# Whom an object exists for. Anyone else is told it does not exist (NOT_FOUND / null),
# so ids cannot be probed.
REACH: dict[str, frozenset[Rel]] = {
    "User": _rules(SELF, MEMBER, S),
    "Company": _rules(MEMBER, S),
    "Model": _rules(OWN, PROV, S),
    "Comment": _rules(OWN, S),
    "Order": _rules(OWN, PROV, S),
    "AuditEvent": _rules(S),
    "Webhook": _rules(ADMIN, S),  # its deliveries are reached with it
    "Quote": _rules(OWN, S),
}

# What a relation requires of the caller alone; used on root fields, before any object is known.
_POSSIBLE: dict[Rel, Callable[[Viewer], bool]] = {
    Rel.EVERYONE: lambda v: True,
    Rel.AUTHENTICATED: lambda v: v.authenticated,
    Rel.SELF: lambda v: v.authenticated,
    Rel.COMPANY_MEMBER: lambda v: v.company_id is not None,
    Rel.COMPANY_ADMIN: lambda v: v.is_company_admin,
    Rel.CUSTOMER: lambda v: v.role == "CUSTOMER" and v.company_id is not None,
    Rel.SAME_COMPANY: lambda v: v.role == "CUSTOMER" and v.company_id is not None,
    Rel.PROVIDER: lambda v: v.role == "PROVIDER" and v.company_id is not None,
    Rel.ASSIGNED_PROVIDER: lambda v: v.role == "PROVIDER" and v.company_id is not None,
    Rel.STAFF: lambda v: v.role == "STAFF",
}


@dataclass(frozen=True)
class Viewer:
    """The caller. `ANONYMOUS` when no valid credentials came with the request."""

    user_id: UUID | None = None
    role: str | None = None
    company_id: UUID | None = None
    is_company_admin: bool = False
    session_id: int | None = None
    api_token_id: UUID | None = None

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Viewer()


@dataclass(frozen=True)
class Subject:
    """What the policy needs to know of an object: its kind, id and owners."""

    kind: str
    id: UUID
    company_id: UUID | None = None
    # For an order: the provider company currently holding it (None when not assigned
    # or when the provider declined).
    provider_id: UUID | None = None
    # For a comment: the model it belongs to.
    model_id: UUID | None = None


# Looks up which provider companies hold an active order of a model.
ProvidersOfModel = Callable[[UUID], Awaitable[frozenset[UUID]]]


async def no_providers(model_id: UUID) -> frozenset[UUID]:
    """For subjects that are not models: no lookup needed."""
    return frozenset()


def rule_for(key: str) -> frozenset[Rel] | None:
    """The rule of `Type.field`, falling back to `Type.*` and `*Suffix.*`; None means deny."""
    if key in RULES:
        return RULES[key]
    type_name, _, _ = key.partition(".")
    if f"{type_name}.*" in RULES:
        return RULES[f"{type_name}.*"]
    for pattern, rule in RULES.items():
        if pattern.startswith("*") and type_name.endswith(pattern[1:].split(".")[0]):
            return rule
    return None


def may_attempt(rule: Iterable[Rel], viewer: Viewer) -> bool:
    """On a root field: could this caller hold any relation the rule grants?"""
    return any(_POSSIBLE[rel](viewer) for rel in rule)


def _local_relations(viewer: Viewer, subject: Subject) -> set[Rel]:
    """Every relation decidable from the caller and the object alone (no database)."""
    held = {Rel.EVERYONE}
    if not viewer.authenticated:
        return held
    held.add(Rel.AUTHENTICATED)
    held |= {rel for rel in (Rel.CUSTOMER, Rel.PROVIDER, Rel.STAFF) if _POSSIBLE[rel](viewer)}
    same_company = subject.company_id is not None and subject.company_id == viewer.company_id
    if subject.kind == "User" and subject.id == viewer.user_id:
        held.add(Rel.SELF)
    if subject.kind in ("User", "Company", "Webhook") and same_company:
        held.add(Rel.COMPANY_MEMBER)
        if viewer.is_company_admin:
            held.add(Rel.COMPANY_ADMIN)
    owned_kinds = ("Model", "Comment", "Order", "Quote")
    if subject.kind in owned_kinds and same_company and viewer.role == "CUSTOMER":
        held.add(Rel.SAME_COMPANY)
    if (
        viewer.role == "PROVIDER"
        and viewer.company_id is not None
        and subject.kind == "Order"
        and subject.provider_id == viewer.company_id
    ):
        held.add(Rel.ASSIGNED_PROVIDER)
    return held


def _needs_lookup(viewer: Viewer, subject: Subject) -> bool:
    """A provider asking about a model: whether it holds one of its orders is in the database."""
    return viewer.role == "PROVIDER" and viewer.company_id is not None and subject.kind == "Model"


def known_relations(viewer: Viewer, subject: Subject) -> frozenset[Rel] | None:
    """`relations()` when it needs no lookup, else None (the caller awaits `relations()`)."""
    if _needs_lookup(viewer, subject):
        return None
    return frozenset(_local_relations(viewer, subject))


async def relations(
    viewer: Viewer, subject: Subject, providers_of_model: ProvidersOfModel
) -> frozenset[Rel]:
    """Every relation the caller has to the object."""
    held = _local_relations(viewer, subject)
    if _needs_lookup(viewer, subject) and viewer.company_id in await providers_of_model(subject.id):
        held.add(Rel.ASSIGNED_PROVIDER)
    return frozenset(held)


def grants(rule: Iterable[Rel], held: frozenset[Rel]) -> bool:
    return not held.isdisjoint(rule)


def attempt(key: str, viewer: Viewer) -> None:
    """Before any object is known: raise unless this caller could be granted `key` at all
    (e.g. before accepting an upload's bytes)."""
    rule = rule_for(key)
    if rule is not None and may_attempt(rule, viewer):
        return
    raise Forbidden() if viewer.authenticated else Unauthenticated()


def order_holder(provider_id: UUID | None, status: str) -> UUID | None:
    """The provider company holding an order: its assignee, while the order is active."""
    return provider_id if status in PROVIDER_ACTIVE_STATUSES else None


def held_orders() -> Q:
    """Orders some provider holds (the query form of `order_holder`)."""
    return Q(provider_id__not_isnull=True, status__in=PROVIDER_ACTIVE_STATUSES)


# --- List filters: REACH as query conditions ---------------------------------------------
# The rows of a kind to which a caller holds a relation, as a condition on that kind's
# table; the same relations `relations()` computes for one object. STAFF reaches every row.
_ROWS: dict[tuple[str, Rel], Callable[[Viewer], Q]] = {
    ("User", Rel.SELF): lambda v: Q(id=v.user_id),
    ("User", Rel.COMPANY_MEMBER): lambda v: Q(company_id=v.company_id),
    ("Company", Rel.COMPANY_MEMBER): lambda v: Q(id=v.company_id),
    ("Model", Rel.SAME_COMPANY): lambda v: Q(company_id=v.company_id),
    ("Model", Rel.ASSIGNED_PROVIDER): lambda v: Q(
        id__in=Subquery(Order.filter(held_orders(), provider_id=v.company_id).values("model_id"))
    ),
    ("Comment", Rel.SAME_COMPANY): lambda v: Q(model__company_id=v.company_id),
    ("Order", Rel.SAME_COMPANY): lambda v: Q(company_id=v.company_id),
    ("Order", Rel.ASSIGNED_PROVIDER): lambda v: Q(held_orders(), provider_id=v.company_id),
    ("Webhook", Rel.COMPANY_ADMIN): lambda v: Q(company_id=v.company_id),
    ("Quote", Rel.SAME_COMPANY): lambda v: Q(company_id=v.company_id),
}
_EVERY_ROW = Q(id__isnull=False)
_NO_ROW = Q(id__isnull=True)  # nobody: an empty result, never everything


def reach_filter(kind: str, viewer: Viewer) -> Q:
    """The condition selecting exactly the `kind` rows this caller may reach."""
    conditions: list[Q] = []
    for rel in sorted(REACH[kind]):
        if not _POSSIBLE[rel](viewer):
            continue
        if rel is Rel.STAFF:
            return _EVERY_ROW
        conditions.append(_ROWS[(kind, rel)](viewer))
    return reduce(operator.or_, conditions) if conditions else _NO_ROW


class Access:
    """One caller's view of the policy for one request: relations computed once per object."""

    def __init__(
        self,
        viewer: Viewer,
        providers_of_model: ProvidersOfModel,
        ip: str | None = None,
        forget_providers: Callable[[UUID], object] | None = None,
    ) -> None:
        self.viewer = viewer
        self.ip = ip
        self._providers_of_model = providers_of_model
        self._forget_providers = forget_providers
        self._cache: dict[tuple[str, UUID], frozenset[Rel]] = {}

    async def relations_to(self, subject: Subject) -> frozenset[Rel]:
        key = (subject.kind, subject.id)
        if key not in self._cache:
            self._cache[key] = await relations(self.viewer, subject, self._providers_of_model)
        return self._cache[key]

    def known_relations_to(self, subject: Subject) -> frozenset[Rel] | None:
        """The relations without awaiting: cached, or decidable without a lookup; else None."""
        key = (subject.kind, subject.id)
        held = self._cache.get(key)
        if held is None:
            held = known_relations(self.viewer, subject)
            if held is not None:
                self._cache[key] = held
        return held

    async def can_reach(self, subject: Subject) -> bool:
        return grants(REACH[subject.kind], await self.relations_to(subject))

    async def authorize(self, key: str, subject: Subject) -> None:
        """Raise NOT_FOUND when the object is out of reach, FORBIDDEN when `key` is not granted.

        Both refusals of an authenticated caller are audited: they are what probing
        for other companies' ids, or a partner tool overstepping, looks like.
        """
        if not self.viewer.authenticated:
            raise Unauthenticated()
        held = await self.relations_to(subject)
        if not grants(REACH[subject.kind], held):
            await record_denial(self.viewer, self.ip, key, "not_found", subject)
            raise NotFound(f"{subject.kind} not found.")
        rule = rule_for(key)
        if rule is None or not grants(rule, held):
            await record_denial(self.viewer, self.ip, key, "forbidden", subject)
            raise Forbidden()

    async def may(self, key: str, subject: Subject) -> bool:
        """Silent form of authorize (subscriptions): reached and granted, no audit, no error."""
        held = await self.relations_to(subject)
        rule = rule_for(key)
        return grants(REACH[subject.kind], held) and rule is not None and grants(rule, held)

    def forget(self, subject: Subject) -> None:
        """Drop a cached answer after the object's owners changed (e.g. an order reassigned)."""
        self._cache.pop((subject.kind, subject.id), None)

    def forget_model(self, model_id: UUID | None) -> None:
        """Drop what this request knows of a model's rights after its orders' providers
        changed (assigned, declined, delivered): the rest of the document sees the change."""
        if model_id is None:
            return
        self._cache.pop(("Model", model_id), None)
        if self._forget_providers is not None:
            self._forget_providers(model_id)


async def record_denial(
    viewer: Viewer, ip: str | None, key: str, reason: str, subject: Subject | None = None
) -> None:
    """The audit event `permission.denied`: who was refused what, on which object, from where."""
    ids: dict[str, UUID | None] = {}
    if subject is not None:
        ids["model_id"] = subject.id if subject.kind == "Model" else subject.model_id
        ids["order_id"] = subject.id if subject.kind == "Order" else None
    await audit.record(
        "permission.denied",
        actor_id=viewer.user_id,
        company_id=viewer.company_id,
        ip=ip,
        operation=key,
        reason=reason,
        subject=f"{subject.kind}:{subject.id}" if subject is not None else None,
        **ids,
    )
