"""Relay connections (`edges { cursor node }`, `pageInfo`), one generic shape for all lists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry

from domain.pagination import Page
from schema.fields import guarded

NodeT = TypeVar("NodeT")


@strawberry.type(name="PageInfo")
class PageInfo:
    has_next_page: bool = guarded()
    end_cursor: str | None = guarded()


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str = guarded()
    node: NodeT = guarded()


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]] = guarded()
    page_info: PageInfo = guarded()


def connection_from_page(page: Page, wrap: Callable[[Any], NodeT]) -> Connection[NodeT]:
    return Connection(
        edges=[
            Edge(cursor=c, node=wrap(item))
            for c, item in zip(page.cursors, page.items, strict=True)
        ],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
    )
