"""Keyset pagination for Relay connections: stable under inserts, O(page) per query.

A cursor is the (created_at, id) of the last row seen, base64-encoded. It is
opaque to clients but not secret: forging one only moves within rows that the
query's own filters already allow.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from domain.errors import BadUserInput

MAX_PAGE = 100
DEFAULT_PAGE = 20
T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None


def encode_cursor(created_at: datetime, row_id: Any) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(stamp), str(UUID(row_id)) if "-" in row_id else row_id
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadUserInput("The cursor is not valid.", field="after") from None


def check_first(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if not isinstance(first, int) or first < 1 or first > MAX_PAGE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE}.", field="first")
    return first


async def paginate(query: QuerySet, first: int | None, after: str | None) -> Page:
    """Newest first, `first` rows after the cursor."""
    first = check_first(first)
    if after:
        stamp, row_id = decode_cursor(after)
        query = query.filter(Q(created_at__lt=stamp) | Q(created_at=stamp, id__lt=row_id))
    rows = await query.order_by("-created_at", "-id").limit(first + 1)
    items = rows[:first]
    return Page(
        items=items,
        cursors=[encode_cursor(row.created_at, row.id) for row in items],
        has_next_page=len(rows) > first,
    )
