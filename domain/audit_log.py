"""Reading the audit trail (staff only, by the policy): newest first, filtered.

Events are written by domain/audit.py; this module only lists them. Pages are
keyed on (at, id) like every other list (domain/pagination.py), so a page stays
stable while new events arrive.
"""

from __future__ import annotations

from uuid import UUID

from tortoise.expressions import Q

from domain.errors import BadUserInput
from domain.pagination import Page, check_first, decode_cursor, encode_cursor
from domain.policy import Viewer, reach_filter
from storage.models import AuditEvent

DEFAULT_PAGE = 50


def _filter_id(value: object, field: str) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise BadUserInput(f"{field} is not a valid id.", field=field) from None


async def list_events(
    viewer: Viewer,
    first: int | None,
    after: str | None,
    *,
    kind: str | None = None,
    user_id: object = None,
    model_id: object = None,
    order_id: object = None,
) -> Page[AuditEvent]:
    first = check_first(DEFAULT_PAGE if first is None else first)
    query = AuditEvent.filter(reach_filter("AuditEvent", viewer))
    if kind:
        query = query.filter(kind=kind.strip())
    if user_id is not None:
        query = query.filter(actor_id=_filter_id(user_id, "userId"))
    if model_id is not None:
        query = query.filter(model_id=_filter_id(model_id, "modelId"))
    if order_id is not None:
        query = query.filter(order_id=_filter_id(order_id, "orderId"))
    if after:
        stamp, row_id = decode_cursor(after)
        if not row_id.isdigit():
            raise BadUserInput("The cursor is not valid.", field="after")
        query = query.filter(Q(at__lt=stamp) | Q(at=stamp, id__lt=int(row_id)))
    rows = await query.order_by("-at", "-id").limit(first + 1)
    items = rows[:first]
    return Page(
        items=items,
        cursors=[encode_cursor(row.at, row.id) for row in items],
        has_next_page=len(rows) > first,
    )
