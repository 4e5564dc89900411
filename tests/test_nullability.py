"""The contract's nullability rule, proven over the whole schema (issue 9, bug 4).

"A field that some caller who can reach its object may not read is nullable, so a
refusal blanks that field only, never the whole object or page." The test derives
it from the policy table: for every object type with a reach (REACH, or the reach
of the object it belongs to), every field whose rule grants fewer relations than
the reach must be nullable. It fails on any such non-null field.
"""

from __future__ import annotations

from graphql import GraphQLNonNull, GraphQLObjectType

from domain import policy
from domain.policy import Rel
from schema.app_schema import build_schema

SCHEMA = build_schema(production=False)

# Types without a REACH row of their own are reached with the object they belong to
# (their `policy_subject` is that object's).
BORROWED_REACH = {"OrderEvent": "Order"}
# Relations that include every caller who can reach anything (reach needs a sign-in).
BROAD = {Rel.EVERYONE, Rel.AUTHENTICATED}


def _reach(type_name: str) -> frozenset[Rel] | None:
    kind = BORROWED_REACH.get(type_name, type_name)
    return policy.REACH.get(kind)


def narrower_than_reach(rule: frozenset[Rel], reach: frozenset[Rel]) -> bool:
    """Does some relation that reaches the object fail to be granted the field?"""
    return not (rule & BROAD) and not reach <= rule


def violations() -> list[str]:
    found = []
    for type_name, graphql_type in SCHEMA._schema.type_map.items():
        if not isinstance(graphql_type, GraphQLObjectType) or type_name.startswith("__"):
            continue
        reach = _reach(type_name)
        if reach is None:
            continue
        for field_name, field in graphql_type.fields.items():
            rule = policy.rule_for(f"{type_name}.{field_name}") or frozenset()
            if isinstance(field.type, GraphQLNonNull) and narrower_than_reach(rule, reach):
                found.append(f"{type_name}.{field_name}")
    return sorted(found)


def test_no_non_null_field_is_narrower_than_its_reach() -> None:
    assert violations() == []


def test_the_walk_sees_the_types_that_matter() -> None:
    seen = {name for name in SCHEMA._schema.type_map if _reach(name) is not None}
    assert {"User", "Company", "Model", "Order", "OrderEvent", "Comment", "Quote"} <= seen


def test_the_rule_itself() -> None:
    reach = frozenset({Rel.SAME_COMPANY, Rel.ASSIGNED_PROVIDER, Rel.STAFF})
    assert narrower_than_reach(frozenset({Rel.STAFF}), reach)
    assert narrower_than_reach(frozenset({Rel.SAME_COMPANY, Rel.STAFF}), reach)
    assert not narrower_than_reach(reach, reach)
    assert not narrower_than_reach(frozenset({Rel.EVERYONE}), reach)
