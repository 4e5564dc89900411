"""Hot look-ups whose SQL tortoise builds once.

Every authenticated request finds its session or API token by the token's digest.
Building that query (tortoise's QuerySet, then pypika's SQL) cost about as much as
running it on SQLite: half of `authenticate`, 9 % of the server's CPU for `me`
(py-spy under wrk, 2026-12-01). A `PreparedLookup` asks tortoise for the SQL and
its row mapping (joins of `select_related` included) once per database dialect and
afterwards only binds the value, so tortoise still writes the SQL and reads the rows.

Only for a query whose SQL does not depend on the value (no `__in` list) and whose
value both drivers take as it is: a `str`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

M = TypeVar("M", bound=Model)

# Stands for the value while the SQL is built; no digest or token can contain NUL.
_MARK = "\x00prepared-lookup-value\x00"


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    position: int  # of the value in params
    select_related_idx: Any


class PreparedLookup(Generic[M]):
    """At most one `model` row of `build(value)`; the SQL is built once per dialect."""

    def __init__(self, model: type[M], build: Callable[[str], QuerySet[M]]) -> None:
        self._model = model
        self._build = build
        self._compiled: dict[str, _Compiled] = {}

    def _compile(self, dialect: str) -> _Compiled:
        query = self._build(_MARK).limit(2)
        if query.model is not self._model:
            raise ValueError("the query must select the look-up's model")
        query._db = query._choose_db()
        query._make_query()
        sql, params = query.query.get_parameterized_sql()
        if [p for p in params if isinstance(p, str) and _MARK in p] != [_MARK]:
            raise ValueError("a prepared look-up must bind its value exactly once, as is")
        compiled = _Compiled(sql, tuple(params), params.index(_MARK), query._select_related_idx)
        self._compiled[dialect] = compiled
        return compiled

    async def first(self, value: str) -> M | None:
        if not isinstance(value, str) or _MARK in value:
            raise TypeError("a prepared look-up takes a str without NUL marks")
        # The connection of this moment: a transaction's own inside `in_transaction()`.
        db = self._model._choose_db()
        dialect = db.capabilities.dialect
        compiled = self._compiled.get(dialect) or self._compile(dialect)
        params = list(compiled.params)
        params[compiled.position] = value
        executor = db.executor_class(
            model=self._model, db=db, select_related_idx=compiled.select_related_idx
        )
        rows: list[M] = await executor.execute_select(compiled.sql, params)
        if len(rows) > 1:
            raise LookupError("a prepared look-up matched more than one row")
        return rows[0] if rows else None
