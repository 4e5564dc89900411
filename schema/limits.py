"""Validation rules that refuse abusive documents before anything runs.

- A cost limit: each selected field costs 1, multiplied by the page size of
  every list above it (`first`, default 20; a variable counts as the largest
  page, since its value is not known yet), so one document cannot ask for a
  million objects.
- No batching of credential checks: `logIn`, `confirmTotpEnrollment` and
  `acceptInvitation` may appear once per document, aliases included; 200
  aliased guesses in one request are refused as a whole.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
)

from domain.pagination import DEFAULT_PAGE, MAX_PAGE

MAX_COST = 20_000
ONCE_PER_DOCUMENT = frozenset({"logIn", "confirmTotpEnrollment", "acceptInvitation"})
_LIST_FIELDS_WITHOUT_FIRST = {"members": 50, "history": 50, "orders": 50, "issues": 20}


def _page_size(field: FieldNode) -> int:
    for argument in field.arguments or ():
        if argument.name.value == "first":
            if isinstance(argument.value, IntValueNode):
                return max(1, min(int(argument.value.value), MAX_PAGE))
            if isinstance(argument.value, VariableNode):
                return MAX_PAGE
    if field.name.value in _LIST_FIELDS_WITHOUT_FIRST:
        return _LIST_FIELDS_WITHOUT_FIRST[field.name.value]
    return DEFAULT_PAGE if field.selection_set and _is_connection(field) else 1


def _is_connection(field: FieldNode) -> bool:
    selections = field.selection_set.selections if field.selection_set else ()
    names = {s.name.value for s in selections if isinstance(s, FieldNode)}
    return bool(names & {"edges", "pageInfo"})


class _Walker:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.counts: dict[str, int] = {}

    def cost(self, selection_set: SelectionSetNode | None, depth: int = 0) -> int:
        if selection_set is None or depth > 50:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                self.counts[name] = self.counts.get(name, 0) + 1
                total += 1 + _page_size(selection) * self.cost(selection.selection_set, depth + 1)
            elif isinstance(selection, InlineFragmentNode):
                total += self.cost(selection.selection_set, depth + 1)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    total += self.cost(fragment.selection_set, depth + 1)
        return total


class AbuseLimits(ValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        fragments = {
            d.name.value: d
            for d in self.context.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        walker = _Walker(fragments)
        cost = walker.cost(node.selection_set)
        if cost > MAX_COST:
            self.report_error(
                GraphQLError(f"The query is too expensive ({cost} > {MAX_COST}); ask for less.")
            )
        for name in ONCE_PER_DOCUMENT:
            if walker.counts.get(name, 0) > 1:
                self.report_error(
                    GraphQLError(f"`{name}` may appear only once per request; nothing was run.")
                )
