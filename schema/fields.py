"""`guarded()`: a strawberry field that carries the policy permission class.

Every field of every type is declared with it, so no field escapes the policy.
"""

from __future__ import annotations

from typing import Any

import strawberry

from schema.permissions import Policy


def guarded(*args: Any, **kwargs: Any) -> Any:
    return strawberry.field(*args, permission_classes=[Policy], **kwargs)


def from_row(attribute: str, **kwargs: Any) -> Any:
    """A guarded field that reads `attribute` of the ORM row the type wraps."""

    def resolve(root: Any) -> Any:
        return getattr(root.row, attribute)

    return guarded(resolver=resolve, **kwargs)


def guarded_subscription(*args: Any, **kwargs: Any) -> Any:
    """A subscription field with the same permission class (asked once, at subscribe)."""
    return strawberry.subscription(*args, permission_classes=[Policy], **kwargs)
