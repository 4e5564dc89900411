"""Parsing ids sent by clients: a malformed id is simply an id that does not exist."""

from __future__ import annotations

from uuid import UUID

from domain.errors import NotFound

NIL = UUID(int=0)


def uuid_or_nil(value: object) -> UUID:
    """A malformed id as the nil UUID, which names nothing (subscriptions: no refusal)."""
    try:
        return UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return NIL


def parse_id(value: object, kind: str = "Object") -> UUID:
    try:
        return UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"{kind} not found.") from None


# Row ids that are integers (sessions) fit a signed 64-bit column on every backend.
_MAX_ROW_ID = 2**63 - 1


def parse_row_id(value: object, kind: str = "Object") -> int:
    """An integer row id; anything else, or one no column can hold, does not exist."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > _MAX_ROW_ID:
        raise NotFound(f"{kind} not found.")
    return int(text)
