"""The one permission class: it asks the policy table about every field.

It is attached to every field of every type (tests/test_policy_coverage.py
checks that), shows in the SDL as the `@policy` directive, and never decides
anything itself: the rule comes from domain/policy.py.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.permission import BasePermission
from strawberry.schema_directive import Location
from strawberry.types import Info

from domain import policy
from domain.errors import Forbidden, Unauthenticated


@strawberry.schema_directive(locations=[Location.FIELD_DEFINITION], name="policy")
class PolicyDirective:
    """Access to this field is decided by the policy table (deny by default)."""


class Policy(BasePermission):
    """Grants a field when the caller holds a relation its rule names; raises otherwise.

    It raises rather than returning False because the error code depends on the
    caller (UNAUTHENTICATED vs FORBIDDEN), and instances are shared between requests.
    """

    _schema_directive = PolicyDirective()

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        context = info.context
        key = f"{info.path.typename}.{info.field_name}"
        rule = policy.rule_for(key)
        if rule is not None and policy.Rel.EVERYONE in rule:
            return True
        if context.auth_error is not None:
            raise context.auth_error
        viewer = context.viewer
        if rule is not None and await _granted(rule, source, context):
            return True
        if not viewer.authenticated:
            raise Unauthenticated()
        if info.path.typename in ("Query", "Mutation"):  # an operation refused outright
            await policy.record_denial(viewer, context.ip, key, "forbidden")
        raise Forbidden()


async def _granted(rule: frozenset[policy.Rel], source: Any, context: Any) -> bool:
    subject = getattr(source, "policy_subject", None)
    if subject is None:  # a root field: no object yet; the resolver checks the object
        return policy.may_attempt(rule, context.viewer)
    return policy.grants(rule, await context.relations_to(subject()))
