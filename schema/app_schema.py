"""The Schema object: root types, extensions and production switches."""

from __future__ import annotations

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)

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
        extensions.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    return QuietSchema(query=Query, mutation=Mutation, extensions=extensions)


class QuietSchema(strawberry.Schema):
    """Strawberry logs every error with its trace; ErrorCodes already logs the
    unexpected ones, and a wrong password is not worth a stack trace."""

    def process_errors(self, errors, execution_context=None) -> None:  # type: ignore[override]
        return None
