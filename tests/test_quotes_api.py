"""Materials and quotes over the API: the sealed analysis facts, per-material checks,
frozen quotes, expiry and ownership, and bad input that writes nothing (issue 9)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from domain.manufacturability import check
from domain.materials import seed_catalogue
from domain.part_facts import part_facts
from storage.crypto import IntegrityError, WrappedKey, decrypt_bytes, unwrap
from storage.models import (
    AnalysisStatus,
    AuditEvent,
    Company,
    CompanyKind,
    Model3D,
    ModelMetadata,
    Order,
    ProviderMaterial,
    Quote,
)
from storage.models import Material as MaterialRow
from tests.helpers import ADDRESS, Api, Caller, analysed_model, box_stl, wait_analysed

CREATE_QUOTE = """mutation($m: ID!, $c: String!, $q: Int!) {
  createQuote(modelId: $m, materialCode: $c, quantity: $q) {
    id total printable issues { code severity message } breakdown { label amount } } }"""
UPSERT = "mutation($i: MaterialInput!) { upsertMaterial(input: $i) { id code pricePerCm3 } }"
REQUEST = "mutation($i: OrderInput!) { requestOrder(input: $i) { id price } }"
MATERIAL = {
    "code": "PLA",
    "name": "PLA (FDM, Prusa MK4 class)",
    "process": "FDM",
    "minWallMm": 0.8,
    "buildVolume": {"x": 250, "y": 210, "z": 220},
    "pricePerCm3": 0.12,
    "machinePricePerCm3": 0.004,
    "setupFee": 5,
    "minPrice": 10,
}


def _order_input(model_id, **extra) -> dict:
    return {
        "modelId": str(model_id),
        "quantity": 1,
        "material": "PLA",
        "shippingAddress": ADDRESS,
        "billingAddress": ADDRESS,
        **extra,
    }


async def _quote(api: Api, caller: Caller, model_id, code: str = "PLA", quantity: int = 1):
    variables = {"m": str(model_id), "c": code, "q": quantity}
    return (await api.ok(CREATE_QUOTE, variables, caller.token))["createQuote"]


async def test_the_analysis_stores_hull_and_walls_sealed(api: Api, customer: Caller) -> None:
    """Through the real job engine and analysis child: the facts a quote needs are kept,
    sealed with the model's own key and bound to the model and their purpose."""
    response = await api.upload(box_stl(40, 30, 2), "plate.stl", customer.token)
    model_id = response.json()["data"]["uploadModel"]["id"]
    model = await wait_analysed(model_id)
    assert model.analysis_status == AnalysisStatus.DONE
    metadata = await ModelMetadata.get(model_id=model.id)
    assert metadata.hull_sealed and metadata.walls_sealed
    for blob in (metadata.hull_sealed, metadata.walls_sealed):
        assert b"points" not in blob and b"distances" not in blob  # no plaintext
    key = unwrap(api.services.keyring, WrappedKey.from_str(model.wrapped_key))
    with pytest.raises(IntegrityError):  # bound to its purpose: walls cannot pass as hull
        decrypt_bytes(bytes(metadata.walls_sealed), key, f"model:{model.id}:hull".encode())
    facts = part_facts(api.services.keyring, model, metadata)
    assert facts.hull.points.shape[1] == 3 and facts.walls is not None
    # A 2 mm plate: 2 mm walls measured (the probe reaches 5 mm), judged per material.
    assert facts.walls.thin(2.5)[0] > 0 and facts.walls.thin(1.5)[0] == 0
    tpu = await _quote(api, customer, model.id, "TPU")  # needs 1.2 mm: fine
    assert tpu["printable"] is True, tpu


async def test_walls_are_judged_per_material(api: Api, customer: Caller) -> None:
    model = await analysed_model(
        api.services.keyring, customer.user.company_id, customer.user.id, thinnest_wall_mm=0.7
    )
    pla = await _quote(api, customer, model.id, "PLA")  # needs 0.8 mm
    assert pla["printable"] is False and pla["issues"][0]["code"] == "THIN_WALLS"
    assert "0.70 mm" in pla["issues"][0]["message"]
    resin = await _quote(api, customer, model.id, "RESIN_STANDARD")  # needs 0.6 mm
    assert resin["printable"] is True
    body = await api.gql(REQUEST, {"i": _order_input(model.id)}, customer.token)
    assert body["errors"][0]["extensions"]["code"] == "NOT_PRINTABLE"
    assert "0.70 mm" in body["errors"][0]["message"]
    made = await api.ok(
        REQUEST, {"i": _order_input(model.id, material="RESIN_STANDARD")}, customer.token
    )
    assert made["requestOrder"]["price"] > 0 and await Order.all().count() == 1


async def test_an_older_analysis_is_analysed_again_before_a_quote(
    api: Api, customer: Caller
) -> None:
    """A model analysed before quotes existed has no sealed hull and walls: the first
    quote (or order) answers NOT_PRINTABLE, writes nothing and has the model analysed
    again; once DONE, it is quoted from its own shape."""
    response = await api.upload(box_stl(40, 30, 20), "old.stl", customer.token)
    model_id = response.json()["data"]["uploadModel"]["id"]
    assert (await wait_analysed(model_id)).analysis_status == AnalysisStatus.DONE
    await ModelMetadata.filter(model_id=model_id).update(hull_sealed=None, walls_sealed=None)
    variables = {"m": model_id, "c": "PLA", "q": 1}
    body = await api.gql(CREATE_QUOTE, variables, customer.token)
    extensions = body["errors"][0]["extensions"]
    extensions.pop("requestId")  # every error carries its request's id (issue 14)
    assert extensions == {"code": "NOT_PRINTABLE", "reason": "REANALYSING"}
    assert await Quote.all().count() == 0
    assert (await wait_analysed(model_id)).analysis_status == AnalysisStatus.DONE
    metadata = await ModelMetadata.get(model_id=model_id)
    assert metadata.hull_sealed and metadata.walls_sealed
    quote = await _quote(api, customer, model_id)
    assert quote["printable"] is True, quote


async def test_without_sealed_facts_the_walls_are_not_passed(api: Api, customer: Caller) -> None:
    """Fail safe in the pure check: no wall profile is never a pass."""
    model = await analysed_model(api.services.keyring, customer.user.company_id, customer.user.id)
    metadata = await ModelMetadata.get(model_id=model.id)
    metadata.hull_sealed = metadata.walls_sealed = None
    facts = part_facts(api.services.keyring, model, metadata)
    verdict = check(seed_catalogue()["PLA"], facts)
    assert not verdict.printable and verdict.issues[0].code == "THICKNESS_NOT_CHECKED"


async def test_models_not_analysed_cannot_be_quoted_or_ordered(api: Api, customer: Caller) -> None:
    model = await analysed_model(api.services.keyring, customer.user.company_id, customer.user.id)
    for status in (AnalysisStatus.PENDING, AnalysisStatus.RUNNING, AnalysisStatus.FAILED):
        await Model3D.filter(id=model.id).update(analysis_status=status)
        variables = {"m": str(model.id), "c": "PLA", "q": 1}
        assert await api.error_code(CREATE_QUOTE, variables, customer.token) == "NOT_PRINTABLE"
        body = await api.gql(REQUEST, {"i": _order_input(model.id)}, customer.token)
        assert body["errors"][0]["extensions"]["code"] == "NOT_PRINTABLE"
    assert await Quote.all().count() == 0 and await Order.all().count() == 0


async def test_a_quote_is_frozen_against_price_changes(api: Api, customer: Caller) -> None:
    staff = await api.staff()
    model = await analysed_model(api.services.keyring, customer.user.company_id, customer.user.id)
    before = await _quote(api, customer, model.id, quantity=20)
    changed = await api.ok(UPSERT, {"i": {**MATERIAL, "pricePerCm3": 0.5}}, staff.token)
    assert changed["upsertMaterial"]["pricePerCm3"] == 0.5
    again = await api.ok(
        "query($q: ID!) { quote(id: $q) { total breakdown { amount } } }",
        {"q": before["id"]},
        customer.token,
    )
    assert again["quote"]["total"] == before["total"]
    after = await _quote(api, customer, model.id, quantity=20)
    assert after["total"] > before["total"]
    # The order takes the quote's price, not today's.
    made = await api.ok(
        REQUEST, {"i": _order_input(model.id, quantity=20, quoteId=before["id"])}, customer.token
    )
    assert made["requestOrder"]["price"] == before["total"]


async def test_quote_ownership_expiry_and_terms(api: Api, customer: Caller) -> None:
    keyring = api.services.keyring
    model = await analysed_model(keyring, customer.user.company_id, customer.user.id)
    other_model = await analysed_model(keyring, customer.user.company_id, customer.user.id)
    stranger = await api.customer()
    foreign_model = await analysed_model(keyring, stranger.user.company_id, stranger.user.id)
    quote = await _quote(api, customer, model.id)
    foreign = await _quote(api, stranger, foreign_model.id)

    async def refused(variables: dict, caller: Caller = customer) -> dict:
        body = await api.gql(REQUEST, {"i": variables}, caller.token)
        extensions = body["errors"][0]["extensions"]
        extensions.pop("requestId")  # every error carries its request's id (issue 14)
        return extensions

    assert (await refused(_order_input(model.id, quoteId=foreign["id"])))["code"] == "NOT_FOUND"
    assert (await refused(_order_input(model.id, quoteId="not-an-id")))["code"] == "NOT_FOUND"
    wrong_model = await refused(_order_input(other_model.id, quoteId=quote["id"]))
    assert wrong_model == {"code": "BAD_USER_INPUT", "field": "quoteId"}
    wrong_material = await refused(_order_input(model.id, material="PETG", quoteId=quote["id"]))
    assert wrong_material["field"] == "material"
    await Quote.filter(id=quote["id"]).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
        snapshot={
            **(await Quote.get(id=quote["id"])).snapshot,
            "expires_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
        },
    )
    expired = await refused(_order_input(model.id, quoteId=quote["id"]))
    assert expired == {"code": "BAD_USER_INPUT", "field": "quoteId"}
    # Another company's model or quote does not exist for the caller.
    variables = {"m": str(foreign_model.id), "c": "PLA", "q": 1}
    assert await api.error_code(CREATE_QUOTE, variables, customer.token) == "NOT_FOUND"
    hidden = await api.ok(
        "query($q: ID!) { quote(id: $q) { id } }", {"q": foreign["id"]}, customer.token
    )
    assert hidden == {"quote": None}
    assert await Order.all().count() == 0


@pytest.mark.parametrize(
    ("code", "quantity", "expected"),
    [
        ("PLA", 0, "BAD_USER_INPUT"),
        ("PLA", -1, "BAD_USER_INPUT"),
        ("PLA", 10_001, "BAD_USER_INPUT"),
        ("PLA", 10**9, "BAD_USER_INPUT"),
        ("pla", 1, "BAD_USER_INPUT"),
        ("PA12", 1, "BAD_USER_INPUT"),  # the legacy code: inactive
        ("", 1, "BAD_USER_INPUT"),
        ("PLA\x00", 1, "BAD_USER_INPUT"),
        ("<script>", 1, "BAD_USER_INPUT"),
        ("X" * 10_000, 1, "BAD_USER_INPUT"),
    ],
)
async def test_bad_quote_requests_write_nothing(
    api: Api, customer: Caller, code: str, quantity: int, expected: str
) -> None:
    model = await analysed_model(api.services.keyring, customer.user.company_id, customer.user.id)
    variables = {"m": str(model.id), "c": code, "q": quantity}
    body = await api.gql(CREATE_QUOTE, variables, customer.token)
    assert body["errors"][0]["extensions"]["code"] == expected, body
    assert "<script>" not in json.dumps(body) and "\x00" not in json.dumps(body)
    assert await Quote.all().count() == 0
    assert await AuditEvent.filter(kind="quote.created").count() == 0


@pytest.mark.parametrize(
    "change",
    [
        {"pricePerCm3": -0.1},
        {"pricePerCm3": 0},
        {"pricePerCm3": 1e12},
        {"pricePerCm3": float("inf")},  # sent as Infinity
        {"pricePerCm3": float("nan")},  # sent as NaN
        {"setupFee": -5},
        {"minPrice": 1e300},
        {"machinePricePerCm3": 0.123456789},
        {"minWallMm": 0},
        {"minWallMm": 50},
        {"buildVolume": {"x": 0, "y": 200, "z": 200}},
        {"buildVolume": {"x": -1, "y": 200, "z": 200}},
        {"buildVolume": {"x": 1e9, "y": 200, "z": 200}},
        {"code": "pla lower"},
        {"code": "X"},
        {"code": "A" * 33},
        {"code": "PLA'; --"},
        {"name": ""},
        {"name": "x" * 81},
        {"currency": "BTC"},
    ],
)
async def test_bad_materials_write_nothing(api: Api, change: dict) -> None:
    staff = await api.staff()
    before = [(m.code, m.spec) for m in await MaterialRow.all().order_by("code")]
    variables = {"i": {**MATERIAL, "code": "NEWMAT", **change}}
    # Sent as text: 1e309 and NaN are what a client's JSON may carry, not valid JSON numbers.
    response = await api.client.post(
        "/graphql",
        content=json.dumps({"query": UPSERT, "variables": variables}),
        headers={"Authorization": f"Bearer {staff.token}", "Content-Type": "application/json"},
    )
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert [(m.code, m.spec) for m in await MaterialRow.all().order_by("code")] == before


async def test_staff_keep_the_catalogue_and_what_providers_offer(api: Api) -> None:
    staff = await api.staff()
    made = await api.ok(
        UPSERT, {"i": {**MATERIAL, "code": "PLA_CF", "name": "PLA-CF"}}, staff.token
    )
    assert made["upsertMaterial"]["code"] == "PLA_CF"
    assert await MaterialRow.filter(code="PLA_CF", active=True).exists()
    service = await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
    set_materials = """mutation($c: ID!, $m: [String!]!) {
      setProviderMaterials(companyId: $c, materialCodes: $m) { materials { code } } }"""
    offered = await api.ok(
        set_materials, {"c": str(service.id), "m": ["PLA_CF", "PLA", "PLA"]}, staff.token
    )
    assert offered["setProviderMaterials"]["materials"] == [{"code": "PLA"}, {"code": "PLA_CF"}]
    customer = await api.customer()
    for variables, code in (
        ({"c": str(service.id), "m": ["PLA", "GOLD"]}, "BAD_USER_INPUT"),
        ({"c": str(service.id), "m": ["PA12"]}, "BAD_USER_INPUT"),  # inactive
        ({"c": str(customer.user.company_id), "m": ["PLA"]}, "BAD_USER_INPUT"),
        ({"c": "00000000-0000-0000-0000-000000000000", "m": ["PLA"]}, "NOT_FOUND"),
    ):
        assert await api.error_code(set_materials, variables, staff.token) == code
    assert await ProviderMaterial.filter(company_id=service.id).count() == 2  # unchanged
    # Deactivated: gone from the list, refused for new quotes; staff still see it.
    await api.ok(
        UPSERT,
        {"i": {**MATERIAL, "code": "PLA_CF", "name": "PLA-CF", "active": False}},
        staff.token,
    )
    listed = (await api.ok("{ materials { code } }", token=customer.token))["materials"]
    assert {"code": "PLA_CF"} not in listed and {"code": "PLA"} in listed
