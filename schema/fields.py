"""`guarded()`: a strawberry field that carries the policy permission class.

Every field of every type is declared with it, so no field escapes the policy.
"""

from __future__ import annotations

from typing import Any

import strawberry

from schema.permissions import Policy


def guarded(*args: Any, **kwargs: Any) -> Any:
    return strawberry.field(*args, permission_classes=[Policy], **kwargs)
