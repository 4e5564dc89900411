"""Parsed and validated documents, cached per query text and per set of validation rules.

Clients send the same few documents again and again; parsing and validating one
costs more than running it (issue 14). The parse is keyed by the text and the
parse options (the token limit); the validation by the text, the parse options
AND the exact tuple of validation rules of this request, since rules differ per
caller (in production, introspection is refused to everyone but staff, by a rule
added for that caller only). The rule classes must therefore be created once,
not per request (see schema/app_schema.py), or no two requests would share an
entry. Both caches are bounded LRUs; long documents are not cached at all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from graphql import ASTValidationRule, DocumentNode, GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

MAX_ENTRIES = 512
MAX_CACHED_TEXT = 20_000  # characters; a longer document is parsed and validated each time


class _Lru:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class DocumentCache:
    """One schema's caches, shared by all its requests (one event loop: no lock needed)."""

    def __init__(self, maxsize: int = MAX_ENTRIES) -> None:
        self.parsed = _Lru(maxsize)
        self.validated = _Lru(maxsize)

    def extension(
        self, rules: Sequence[type[ASTValidationRule]], max_tokens: int
    ) -> Callable[[], SchemaExtension]:
        """The extension that applies the limits (the token limit on parsing, the rules
        on validation) and answers from the caches; one extension instead of one per
        limit, since each extension's hooks cost on every request."""
        cache = self
        added = tuple(rules)

        class CachedDocuments(SchemaExtension):
            def on_operation(self) -> Iterator[None]:
                context = self.execution_context
                context.parse_options["max_tokens"] = max_tokens
                context.validation_rules = context.validation_rules + added
                yield

            def on_parse(self) -> Iterator[None]:
                context = self.execution_context
                key = _parse_key(context)
                document: DocumentNode | None = cache.parsed.get(key) if key else None
                if document is not None:
                    context.graphql_document = document
                yield
                if key and document is None and context.graphql_document is not None:
                    cache.parsed.put(key, context.graphql_document)

            def on_validate(self) -> Iterator[None]:
                context = self.execution_context
                key = _parse_key(context)
                if key and context.graphql_document is not None:
                    rules_key = (key, context.validation_rules)
                    errors: list[GraphQLError] | None = cache.validated.get(rules_key)
                    if errors is None:
                        errors = validate_document(
                            context.schema._schema,
                            context.graphql_document,
                            context.validation_rules,
                        )
                        cache.validated.put(rules_key, errors)
                    context.pre_execution_errors = list(errors)
                yield

        return CachedDocuments


def _parse_key(context: Any) -> tuple[str, tuple[tuple[str, Any], ...]] | None:
    query = context.query
    if not query or len(query) > MAX_CACHED_TEXT:
        return None
    return query, tuple(sorted(context.parse_options.items()))
