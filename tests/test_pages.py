"""Issue 14, pages at framework speed: what the fast paths must not change.

- Documents are parsed and validated once per text AND per set of validation rules:
  in production the rule refusing introspection applies to everyone but staff, so a
  document staff validated must still be refused to the next caller.
- The policy decided once per object still refuses what the table refuses, on the
  lean resolvers too (plain attributes and methods without arguments).
- Value types and connections take no policy step; checked fields do.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import replace
from pathlib import Path

from graphql import GraphQLObjectType

from runtime.settings import Settings
from schema.app_schema import build_schema
from schema.permissions import PolicyExtension
from tests.helpers import Api, Caller, box_stl

INTROSPECT = "{ __schema { types { name } } }"


async def test_a_document_validated_for_staff_is_still_refused_to_others(
    database: str, settings: Settings, tmp_path: Path
) -> None:
    from tests.conftest import serving

    production = replace(settings, app_env="production", storage_url=f"file://{tmp_path}")
    async with serving(production) as api:
        customer, staff = await api.customer(), await api.staff()
        # Staff first: a cache keyed by the text alone would now answer everyone with it.
        assert (await api.ok(INTROSPECT, token=staff.token))["__schema"]["types"]
        for token in (None, customer.token):
            assert await api.error_code(INTROSPECT, token=token) == "BAD_USER_INPUT"
        assert (await api.ok(INTROSPECT, token=staff.token))["__schema"]["types"]


async def test_the_same_document_is_validated_once(api: Api, customer: Caller) -> None:
    schema = api.client._transport.app.state.graphql_schema  # type: ignore[attr-defined]
    cache = schema.document_cache
    query = "{ me { firstName company { name } } }"
    for _ in range(5):
        await api.ok(query, token=customer.token)
    entries = [key for key in cache.validated._items if key[0][0] == query]
    assert len(entries) == 1
    # An invalid document is refused every time, from the cache too.
    for _ in range(2):
        assert await api.error_code("{ me { nope } }", token=customer.token) == "BAD_USER_INPUT"


async def test_lean_fields_still_refuse_what_the_table_refuses(api: Api, customer: Caller) -> None:
    model = (await api.upload(box_stl(), "box.stl", token=customer.token)).json()["data"][
        "uploadModel"
    ]
    other = await api.customer()
    query = "query($id: ID!) { model(id: $id) { id name uploadIp } }"
    # The owner reads id and name; uploadIp is staff's only: FORBIDDEN on that field.
    answer = await api.gql(query, {"id": model["id"]}, token=customer.token)
    assert answer["data"]["model"]["id"] == model["id"] and answer["data"]["model"]["name"]
    assert answer["data"]["model"]["uploadIp"] is None
    assert [e["extensions"]["code"] for e in answer["errors"]] == ["FORBIDDEN"]
    assert answer["errors"][0]["path"] == ["model", "uploadIp"]
    # Another company's customer does not reach the model at all.
    assert (await api.ok(query, {"id": model["id"]}, token=other.token))["model"] is None
    # The page lists the owner's models only, and each field answers.
    page = await api.ok(
        "{ models(first: 20) { edges { node { id name analysisStatus } } } }", token=other.token
    )
    assert page["models"]["edges"] == []


def test_value_types_take_no_policy_step_and_checked_fields_do() -> None:
    schema = build_schema(production=False)
    seen: dict[str, bool] = {}
    for type_name, graphql_type in schema._schema.type_map.items():
        if type_name.startswith("__") or not isinstance(graphql_type, GraphQLObjectType):
            continue
        for field_name, field in graphql_type.fields.items():
            definition = field.extensions["strawberry-definition"]
            assert any(isinstance(e, PolicyExtension) for e in definition.extensions), (
                f"{type_name}.{field_name} lost its policy extension"
            )
            seen[f"{type_name}.{field_name}"] = getattr(field.resolve, "_is_default", False)
    # Plain attributes of value types: strawberry's own attribute resolver, no check.
    assert seen["Dimensions.x"] and seen["ModelEdge.node"] and seen["PageInfo.hasNextPage"]
    # Checked attributes and methods keep a decision (not the bare attribute resolver).
    assert not seen["Model.id"] and not seen["Model.name"] and not seen["User.email"]


async def test_me_with_its_company_costs_one_statement(api: Api, customer: Caller) -> None:
    """The caller's company is read with the session (one join), not asked again.

    Statements are collected from this request's task and the tasks it starts
    (DataLoaders query from their own; they inherit its context): the job engine's
    periodic tasks (IP retention reads app_user) may query meanwhile and do not count.
    """
    query = "{ me { firstName company { name } } }"
    await api.ok(query, token=customer.token)
    statements: list[str] = []
    collector = logging.Handler(logging.DEBUG)

    def collect(record: logging.LogRecord) -> None:
        if _MEASURED.get():
            statements.append(record.getMessage())

    collector.emit = collect  # type: ignore[method-assign]
    logger = logging.getLogger("tortoise.db_client")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(collector)
    measured = _MEASURED.set(True)
    try:
        assert (await api.ok(query, token=customer.token))["me"]["company"]["name"]
    finally:
        _MEASURED.reset(measured)
        logger.removeHandler(collector)
        logger.setLevel(previous)
    mine = [s for s in statements if '"session"' in s or '"company"' in s or '"app_user"' in s]
    assert len(mine) == 1, mine


_MEASURED: contextvars.ContextVar[bool] = contextvars.ContextVar("measured", default=False)
