"""The audit trail's type: AuditEvent."""

from __future__ import annotations

import json
from datetime import datetime

import strawberry
from strawberry.types import Info

from domain.policy import Subject
from schema.accounts.types import UserType
from schema.fields import from_row, guarded
from storage.models import AuditEvent


@strawberry.type(name="AuditEvent", description="Who did what, when, from where.")
class AuditEventType:
    row: strawberry.Private[AuditEvent]

    def policy_subject(self) -> Subject:
        return Subject("AuditEvent", self.row.id)

    @guarded()
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    at: datetime = from_row("at")

    @guarded(description="e.g. login, order.requested, permission.denied")
    def kind(self) -> str:
        return self.row.kind

    @guarded(description="Null for anonymous callers (e.g. a failed log-in of an unknown email).")
    async def actor(self, info: Info) -> UserType | None:
        if self.row.actor_id is None:
            return None
        user = await info.context.loaders.user.load(self.row.actor_id)
        return UserType(row=user) if user else None

    @guarded()
    def actor_id(self) -> strawberry.ID | None:
        return _id(self.row.actor_id)

    @guarded()
    def company_id(self) -> strawberry.ID | None:
        return _id(self.row.company_id)

    @guarded()
    def model_id(self) -> strawberry.ID | None:
        return _id(self.row.model_id)

    @guarded()
    def order_id(self) -> strawberry.ID | None:
        return _id(self.row.order_id)

    ip: str | None = from_row("ip")

    @guarded(description="The event's details as a JSON object (a string).")
    def detail(self) -> str:
        return json.dumps(self.row.detail or {}, sort_keys=True, default=str)


def _id(value: object) -> strawberry.ID | None:
    return strawberry.ID(str(value)) if value is not None else None
