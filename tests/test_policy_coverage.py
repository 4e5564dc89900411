"""Deny by default, proven: every field of every type in the public schema
carries the policy permission class and has a rule in the policy table."""

from __future__ import annotations

from graphql import GraphQLObjectType
from strawberry.permission import PermissionExtension

from domain import policy
from schema.app_schema import build_schema
from schema.permissions import Policy

SCHEMA = build_schema(production=False)


def _public_fields():
    for type_name, graphql_type in SCHEMA._schema.type_map.items():
        if type_name.startswith("__") or not isinstance(graphql_type, GraphQLObjectType):
            continue
        for field_name, field in graphql_type.fields.items():
            yield f"{type_name}.{field_name}", field.extensions.get("strawberry-definition")


def _guarded(strawberry_field) -> bool:
    return any(
        isinstance(extension, PermissionExtension)
        and any(isinstance(permission, Policy) for permission in extension.permissions)
        for extension in getattr(strawberry_field, "extensions", ())
    )


def test_the_schema_has_fields_to_check() -> None:
    keys = {key for key, _ in _public_fields()}
    assert {"Query.me", "Mutation.logIn", "User.email", "Company.members"} <= keys


def test_every_field_carries_the_policy_permission() -> None:
    assert [key for key, field in _public_fields() if not _guarded(field)] == []


def test_every_field_has_a_rule() -> None:
    assert [key for key, _ in _public_fields() if policy.rule_for(key) is None] == []


def test_an_unknown_field_is_denied() -> None:
    assert policy.rule_for("Model.secretField") is None
    assert policy.rule_for("Nonsense.anything") is None


def test_every_explicit_rule_names_a_field_of_the_schema() -> None:
    """A rule for a renamed or removed field would silently protect nothing."""
    keys = {key for key, _ in _public_fields()}
    assert [key for key in policy.RULES if "*" not in key and key not in keys] == []
