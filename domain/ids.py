"""Parsing ids sent by clients: a malformed id is simply an id that does not exist."""

from __future__ import annotations

from uuid import UUID

from domain.errors import NotFound


def parse_id(value: object, kind: str = "Object") -> UUID:
    try:
        return UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"{kind} not found.") from None
