"""The Schema object: root types, extensions and production switches."""

from __future__ import annotations

from collections.abc import Iterator

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.types import ExecutionContext

from schema.errors import ErrorCodes
from schema.limits import AbuseLimits
from schema.root import Mutation, Query

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 5000


def build_schema(*, production: bool) -> strawberry.Schema:
    # Factories, not instances: strawberry builds fresh extensions for every request.
    extensions = [
        lambda: ErrorCodes(hide_suggestions=production),
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: AddValidationRules([AbuseLimits]),
    ]
    if production:
        extensions.append(IntrospectionForStaffOnly)
    return QuietSchema(query=Query, mutation=Mutation, extensions=extensions)


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

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None
