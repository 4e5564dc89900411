"""One object for one caller: it does not exist unless the caller reaches it.

Models and orders (and the kinds to come) are found the same way: a malformed
id, a missing row and an unreachable row all answer NOT_FOUND, so ids cannot be
probed; an operation on a reachable row is then checked against its rule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tortoise.models import Model as OrmModel

from domain.errors import NotFound
from domain.ids import parse_id
from domain.policy import Access, Subject

RowT = TypeVar("RowT", bound=OrmModel)


async def reachable(
    access: Access, table: type[RowT], raw_id: object, subject_of: Callable[[RowT], Subject]
) -> RowT:
    """The row if the caller may reach it; NOT_FOUND otherwise, whether or not it exists."""
    kind = subject_kind(table)
    row = await table.get_or_none(id=parse_id(raw_id, kind))
    if row is None or not await access.can_reach(subject_of(row)):
        raise NotFound(f"{kind} not found.")
    return row


async def authorized(
    access: Access,
    key: str,
    table: type[RowT],
    raw_id: object,
    subject_of: Callable[[RowT], Subject],
) -> RowT:
    """The row if the caller may do `key` to it (refusals audited by the policy)."""
    kind = subject_kind(table)
    row = await table.get_or_none(id=parse_id(raw_id, kind))
    if row is None:
        raise NotFound(f"{kind} not found.")
    await access.authorize(key, subject_of(row))
    return row


async def or_none(found: Awaitable[RowT]) -> RowT | None:
    """For queries that answer null rather than NOT_FOUND (`model(id)`, `order(id)`)."""
    try:
        return await found
    except NotFound:
        return None


def subject_kind(table: type[OrmModel]) -> str:
    # The policy's kinds are the GraphQL type names; the table of Model is Model3D.
    return "Model" if table.__name__ == "Model3D" else table.__name__
