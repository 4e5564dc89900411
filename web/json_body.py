"""JSON from clients, with its nesting bounded.

Python's json parser raises RecursionError somewhere near 1,000 levels, and what
walks the value afterwards (GraphQL variable coercion, our own code) may recurse
deeper per level. No request of this API needs more than a handful of levels, so
anything deeper than MAX_JSON_DEPTH is refused as BAD_USER_INPUT before it is used.
"""

from __future__ import annotations

import json
from typing import Any

from domain.errors import BadUserInput

# The whole body counts: {"variables": {"input": {"address": {...}}}} is 4 levels.
MAX_JSON_DEPTH = 32


def load_json(text: str | bytes, what: str = "The body") -> Any:
    """Parse JSON; ValueError when it is not JSON, BadUserInput when nested too deep."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(what) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise _too_deep(what)
    return value


def _too_deep(what: str) -> BadUserInput:
    return BadUserInput(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels).")


def _depth(value: Any) -> int:
    """Nesting depth of lists and objects, without recursion; stops past the bound."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
