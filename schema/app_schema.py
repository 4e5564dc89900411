"""The Schema object: root types, extensions and production switches."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.types import ExecutionContext

from schema import permissions
from schema.document_cache import DocumentCache
from schema.errors import ErrorCodes
from schema.limits import AbuseLimits
from schema.observed import Observed
from schema.root import Mutation, Query, Subscription

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 5000


def build_schema(*, production: bool) -> QuietSchema:
    # The limiters' rule classes are made once, here: strawberry's limiters create
    # a new class per instance, and the validation cache is keyed by the rules.
    rules = [
        *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
        *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
        AbuseLimits,
    ]
    documents = DocumentCache()
    # Factories, not instances: strawberry builds fresh extensions for every request.
    extensions: list[Callable[[], SchemaExtension]] = [
        Observed,  # first: outermost, it sees the coded errors
        lambda: ErrorCodes(hide_suggestions=production),
    ]
    if production:
        extensions.append(IntrospectionForStaffOnly)
    # Last: it adds the limits' rules and caches by the rules the others added.
    extensions.append(documents.extension(rules, max_tokens=MAX_TOKENS))
    schema = QuietSchema(
        query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions
    )
    if permissions.prepare(schema._schema):  # the fast policy path (schema/permissions.py)
        schema = QuietSchema(
        query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions
    )
    permissions.streamline(schema._schema)
    schema.document_cache = documents
    return schema


class IntrospectionForStaffOnly(SchemaExtension):
    """In production the schema is described to staff (GraphiQL) and to nobody else."""

    def on_operation(self) -> Iterator[None]:
        viewer = getattr(self.execution_context.context, "viewer", None)
        if getattr(viewer, "role", None) != "STAFF":
            self.execution_context.validation_rules = (
                *self.execution_context.validation_rules,
                NoSchemaIntrospectionCustomRule,
            )
        yield


class QuietSchema(strawberry.Schema):
    """Strawberry logs every error with its trace; ErrorCodes already logs the
    unexpected ones, and a wrong password is not worth a stack trace."""

    document_cache: DocumentCache | None = None

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None
