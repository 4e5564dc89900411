"""The one permission class: it asks the policy table about every field.

It is attached to every field of every type (tests/test_policy_coverage.py
checks that), shows in the SDL as the `@policy` directive, and never decides
anything itself: the rule comes from domain/policy.py.

Speed (issue 14): strawberry's own PermissionExtension awaits an `async
has_permission` on every field of every object, which turns every plain
attribute into a coroutine. `PolicyExtension` asks the same question without
awaiting whenever the answer needs no database (the object's relations are
computed once per object and request, `Access.known_relations_to`), and only
falls back to awaiting when it must (a provider asking about a model). Fields
whose rule grants everyone (plain value types, connections) carry the
extension for the coverage test, but take no part in resolving.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable
from typing import Any

import strawberry
from graphql import GraphQLObjectType, GraphQLSchema
from strawberry.extensions.field_extension import AsyncExtensionResolver, SyncExtensionResolver
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema_directive import Location
from strawberry.types import Info

from domain import policy
from domain.errors import Forbidden, Unauthenticated

ROOT_TYPES = ("Query", "Mutation", "Subscription")


@strawberry.schema_directive(locations=[Location.FIELD_DEFINITION], name="policy")
class PolicyDirective:
    """Access to this field is decided by the policy table (deny by default)."""


class Policy(BasePermission):
    """Grants a field when the caller holds a relation its rule names; raises otherwise.

    It raises rather than returning False because the error code depends on the
    caller (UNAUTHENTICATED vs FORBIDDEN), and instances are shared between requests.
    Under strawberry's plain PermissionExtension (a field declared with
    `permission_classes=[Policy]`) this async form is what runs; `guarded()` fields
    run `decide` through `PolicyExtension`.
    """

    _schema_directive = PolicyDirective()

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        verdict = decide(source, info.path.typename or "", info.field_name, info.context)
        if verdict is not True:
            await verdict
        return True


# (type name, field name) -> rule; the table is data fixed at import, so a lookup
# (with its `Type.*` / `*Suffix.*` fall-backs) is computed once per field.
_RULE_CACHE: dict[tuple[str, str], frozenset[policy.Rel] | None] = {}


def _rule(typename: str, field_name: str) -> frozenset[policy.Rel] | None:
    key = (typename, field_name)
    try:
        return _RULE_CACHE[key]
    except KeyError:
        rule = _RULE_CACHE[key] = policy.rule_for(f"{typename}.{field_name}")
        return rule


def decide(source: Any, typename: str, field_name: str, context: Any) -> Any:
    """True when granted, without awaiting; else raises, or returns an awaitable that
    raises when refused (and returns None when granted after a lookup)."""
    rule = _rule(typename, field_name)
    if rule is not None and policy.Rel.EVERYONE in rule:
        return True
    if context.auth_error is not None:
        raise context.auth_error
    if rule is not None:
        subject_of = getattr(source, "policy_subject", None)
        if subject_of is None:  # a root field: no object yet; the resolver checks the object
            if policy.may_attempt(rule, context.viewer):
                return True
        else:
            held = _held(source, subject_of, context)
            if held is None:
                return _decide_after_lookup(rule, subject_of(), typename, field_name, context)
            if policy.grants(rule, held):
                return True
    return _refuse(typename, field_name, context)


def _held(source: Any, subject_of: Any, context: Any) -> frozenset[policy.Rel] | None:
    """The caller's relations to this object, kept on the object for its other fields
    (tagged with the request's Access: a log-in mid-request makes a new one)."""
    access = context.access
    cached = getattr(source, "_policy_held", None)
    if cached is not None and cached[0] is access:
        return cached[1]
    held = access.known_relations_to(subject_of())
    if held is not None:
        # A slotted type cannot keep it: the Access (a dict lookup) answers each time.
        with contextlib.suppress(AttributeError, TypeError):
            object.__setattr__(source, "_policy_held", (access, held))
    return held


async def _decide_after_lookup(
    rule: frozenset[policy.Rel],
    subject: policy.Subject,
    typename: str,
    field_name: str,
    context: Any,
) -> None:
    if policy.grants(rule, await context.relations_to(subject)):
        return
    refusal = _refuse(typename, field_name, context)
    if inspect.isawaitable(refusal):
        await refusal


def _refuse(typename: str, field_name: str, context: Any) -> Awaitable[None]:
    viewer = context.viewer
    if not viewer.authenticated:
        raise Unauthenticated()
    if typename in ROOT_TYPES:  # an operation refused outright is audited
        return _record_and_forbid(viewer, context.ip, f"{typename}.{field_name}")
    raise Forbidden()


async def _record_and_forbid(viewer: policy.Viewer, ip: str | None, key: str) -> None:
    await policy.record_denial(viewer, ip, key, "forbidden")
    raise Forbidden()


class PolicyExtension(PermissionExtension):
    """The Policy permission, resolved synchronously when the answer is known."""

    supports_sync = True
    supports_async = True
    has_resolver = True

    def resolve(self, next_: SyncExtensionResolver, source: Any, info: Info, **kwargs: Any) -> Any:
        verdict = decide(source, info.path.typename or "", info.field_name, info.context)
        if verdict is True:
            return next_(source, info, **kwargs)
        return _then(verdict, next_, source, info, kwargs)

    async def resolve_async(
        self, next_: AsyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Any:
        verdict = decide(source, info.path.typename or "", info.field_name, info.context)
        if verdict is not True:
            await verdict
        result = next_(source, info, **kwargs)
        if inspect.isasyncgen(result):
            return result
        return await result


async def _then(
    verdict: Awaitable[None],
    next_: SyncExtensionResolver,
    source: Any,
    info: Info,
    kwargs: dict[str, Any],
) -> Any:
    await verdict
    result = next_(source, info, **kwargs)
    return await result if inspect.isawaitable(result) else result


def prepare(schema: GraphQLSchema) -> bool:
    """Turn every Policy permission of a built schema into a PolicyExtension.

    Fields are declared the usual way (`guarded()`, or `permission_classes=[Policy]`),
    so strawberry gives each its PermissionExtension; this swaps their class in place
    (generic types share one instance between specialisations, so the instance is
    what must change) and leaves a field out of the resolve chain when its rule
    grants everyone on every type that holds it (plain value types, connections).
    Returns True when something changed: the schema must then be built again, since
    strawberry fixes each field's resolver chain when it builds the schema.
    """
    holders: dict[int, tuple[PermissionExtension, bool]] = {}
    for type_name, graphql_type in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(graphql_type, GraphQLObjectType):
            continue
        for field_name, graphql_field in graphql_type.fields.items():
            definition = graphql_field.extensions.get("strawberry-definition")
            rule = policy.rule_for(f"{type_name}.{field_name}")
            everyone = (
                type_name not in ROOT_TYPES and rule is not None and policy.Rel.EVERYONE in rule
            )
            for extension in getattr(definition, "extensions", ()):
                if isinstance(extension, PermissionExtension) and any(
                    isinstance(permission, Policy) for permission in extension.permissions
                ):
                    _, all_everyone = holders.get(id(extension), (extension, True))
                    holders[id(extension)] = (extension, all_everyone and everyone)
    changed = False
    for extension, everyone in holders.values():
        if type(extension) is not PolicyExtension:
            for cached in ("supports_sync", "supports_async", "has_resolver"):
                extension.__dict__.pop(cached, None)
            extension.__class__ = PolicyExtension
            changed = True
        if extension.has_resolver == everyone:
            extension.has_resolver = not everyone
            changed = True
    return changed


def streamline(schema: GraphQLSchema) -> None:
    """Give simple fields a lean resolver: the policy decision, then the field's own
    resolver, without strawberry's per-field machinery (Info object, argument
    conversion, extension chain), which cost more than the rest of a page.

    Simple means: not a root field, no GraphQL arguments, a resolver that does not
    ask for `info` (or none: an attribute), and no extension but the policy's.
    Fields every caller may read skip the decision too (plain value types, edges,
    page info). Everything else keeps strawberry's resolver with PolicyExtension.
    Run on the final schema, after `prepare`.
    """
    for type_name, graphql_type in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(graphql_type, GraphQLObjectType):
            continue
        if type_name in ROOT_TYPES:
            continue
        for field_name, graphql_field in graphql_type.fields.items():
            definition = graphql_field.extensions.get("strawberry-definition")
            if definition is None or not _simple(definition):
                continue
            rule = policy.rule_for(f"{type_name}.{field_name}")
            everyone = rule is not None and policy.Rel.EVERYONE in rule
            graphql_field.resolve = _lean_resolver(definition, checked=not everyone)


def _simple(definition: Any) -> bool:
    extensions = definition.extensions
    if not extensions or not all(type(e) is PolicyExtension for e in extensions):
        return False
    if definition.arguments:
        return False
    resolver = definition.base_resolver
    return resolver is None or (resolver.info_parameter is None and not resolver.arguments)


def _lean_resolver(definition: Any, *, checked: bool) -> Any:
    call = _caller(definition)

    def resolve(source: Any, info: Any, **kwargs: Any) -> Any:
        if checked:
            verdict = decide(source, info.parent_type.name, info.field_name, info.context)
            if verdict is not True:
                return _then_call(verdict, call, source)
        return call(source)

    resolve._is_default = definition.base_resolver is None  # type: ignore[attr-defined]
    return resolve


def _caller(definition: Any) -> Any:
    """source -> the field's value, as strawberry would call its resolver."""
    resolver = definition.base_resolver
    if resolver is None:
        name = definition.python_name
        return lambda source: getattr(source, name)
    by_name = [p.name for p in (resolver.root_parameter, resolver.parent_parameter) if p]
    if resolver.self_parameter is not None:
        return lambda source: resolver(source, **{n: source for n in by_name})
    return lambda source: resolver(**{n: source for n in by_name})


async def _then_call(verdict: Awaitable[None], call: Any, source: Any) -> Any:
    await verdict
    result = call(source)
    return await result if inspect.isawaitable(result) else result
