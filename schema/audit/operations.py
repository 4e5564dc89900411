"""The audit log query (staff)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from domain import audit_log
from schema.audit.types import AuditEventType
from schema.connections import Connection, connection_from_page
from schema.fields import guarded


@strawberry.type
class Query:
    @guarded(description="The audit trail, newest first (staff).")
    async def audit_log(
        self,
        info: Info,
        first: int | None = 50,
        after: str | None = None,
        kind: str | None = None,
        user_id: strawberry.ID | None = None,
        model_id: strawberry.ID | None = None,
        order_id: strawberry.ID | None = None,
    ) -> Connection[AuditEventType]:
        page = await audit_log.list_events(
            info.context.viewer,
            first,
            after, kind=kind, user_id=user_id, model_id=model_id, order_id=order_id
        )
        return connection_from_page(page, lambda row: AuditEventType(row=row))
