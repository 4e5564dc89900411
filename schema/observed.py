"""Counts and times every GraphQL operation (runtime/metrics.py), by its root fields.

The label is the operation type and its root field names (`query models`,
`mutation logIn`), not the client's `operationName`, which anyone could fill with
new values. Documents that do not validate count as `invalid`. It runs outermost
(first in the list), so it sees the errors after ErrorCodes gave them their codes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from graphql import FieldNode, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from runtime import metrics

MAX_NAMED_FIELDS = 3


class Observed(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        operation = _label(context)
        metrics.REQUESTS.labels(operation).inc()
        metrics.LATENCY.labels(operation).observe(time.perf_counter() - started)
        result = context.result
        errors = list(getattr(result, "errors", None) or context.pre_execution_errors or ())
        codes = [str((e.extensions or {}).get("code", "INTERNAL")) for e in errors]
        if codes:
            metrics.count_errors(codes)


def _label(context: object) -> str:
    if getattr(context, "pre_execution_errors", None):
        return "invalid"
    document = getattr(context, "graphql_document", None)
    if document is None:
        return "invalid"
    wanted = getattr(context, "operation_name", None)
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if wanted and (definition.name is None or definition.name.value != wanted):
            continue
        names = sorted(
            {s.name.value for s in definition.selection_set.selections if isinstance(s, FieldNode)}
        )
        if not names or len(names) > MAX_NAMED_FIELDS:
            return f"{definition.operation.value} ({len(names)} fields)"
        return f"{definition.operation.value} {','.join(names)}"
    return "invalid"
