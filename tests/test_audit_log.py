"""The audit trail: what the platform records, and `auditLog` for staff (filters,
pages, details), with callers who may not read it."""

from __future__ import annotations

import json

from domain import audit
from storage.models import AnalysisStatus, AuditEvent, Model3D
from tests.helpers import ADDRESS, PASSWORD, Api, Caller, box_stl, email

LOG = """query($f: Int, $a: String, $k: String, $u: ID, $m: ID, $o: ID) {
  auditLog(first: $f, after: $a, kind: $k, userId: $u, modelId: $m, orderId: $o) {
    edges { cursor node { id at kind actor { id email } actorId companyId modelId orderId ip detail } }
    pageInfo { hasNextPage endCursor } } }"""


async def _log(api: Api, staff: Caller, **variables) -> dict:
    return (await api.ok(LOG, variables, staff.token))["auditLog"]


def _kinds(page: dict) -> list[str]:
    return [edge["node"]["kind"] for edge in page["edges"]]


async def test_only_staff_read_the_trail(api: Api, customer: Caller, staff: Caller) -> None:
    provider = await api.provider()
    assert await api.error_code(LOG) == "UNAUTHENTICATED"
    for caller in (customer, provider):
        body = await api.gql(LOG, {}, caller.token)
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    denied = (await _log(api, staff, k="permission.denied"))["edges"]
    details = [json.loads(edge["node"]["detail"]) for edge in denied]
    assert {d["operation"] for d in details} == {"Query.auditLog"}
    assert {edge["node"]["actorId"] for edge in denied} == {
        str(customer.user.id),
        str(provider.user.id),
    }
    assert {edge["node"]["ip"] for edge in denied} == {"203.0.113.7"}


async def test_the_platform_records_what_matters(api: Api, staff: Caller) -> None:
    sign_up = "mutation($i: SignUpInput!) { signUp(input: $i) { token user { id } } }"
    data = {
        "email": email("new"),
        "password": PASSWORD,
        "firstName": "Ada",
        "lastName": "L",
        "companyName": "Engines Ltd",
        "address": ADDRESS,
    }
    signed = (await api.ok(sign_up, {"i": data}))["signUp"]
    log_in = "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }"
    await api.ok(log_in, {"e": data["email"], "p": PASSWORD})
    assert (
        await api.error_code(log_in, {"e": data["email"], "p": "wrong password 123"})
        == "UNAUTHENTICATED"
    )
    upload = await api.upload(box_stl(), "part.stl", signed["token"])
    model_id = upload.json()["data"]["uploadModel"]["id"]
    await api.ok(
        'mutation($m: ID!) { addComment(modelId: $m, body: "hi") { id } }',
        {"m": model_id},
        signed["token"],
    )
    await api.ok(
        "mutation($m: ID!) { requestDownload(modelId: $m) { url } }",
        {"m": model_id},
        signed["token"],
    )

    mine = await _log(api, staff, u=signed["user"]["id"])
    kinds = set(_kinds(mine))
    assert {
        "signup",
        "login",
        "login.failed",
        "model.uploaded",
        "comment.added",
        "download.link_issued",
    } <= kinds
    assert {edge["node"]["ip"] for edge in mine["edges"]} == {"203.0.113.7"}
    assert {edge["node"]["actor"]["email"] for edge in mine["edges"]} == {data["email"]}
    uploaded = next(e["node"] for e in mine["edges"] if e["node"]["kind"] == "model.uploaded")
    assert uploaded["modelId"] == model_id and json.loads(uploaded["detail"])["format"] == "stl"
    assert set(_kinds(await _log(api, staff, m=model_id))) >= {"model.uploaded", "comment.added"}
    assert _kinds(await _log(api, staff, k="login.failed")) == ["login.failed"]


async def test_pages_are_stable_while_events_arrive(api: Api, staff: Caller) -> None:
    for n in range(7):
        await audit.record("test.event", n=n)
    first = await _log(api, staff, k="test.event", f=3)
    assert [json.loads(e["node"]["detail"])["n"] for e in first["edges"]] == [6, 5, 4]
    await audit.record("test.event", n=7)  # newer than every page: never shows up further on
    second = await _log(api, staff, k="test.event", f=3, a=first["pageInfo"]["endCursor"])
    third = await _log(api, staff, k="test.event", f=3, a=second["pageInfo"]["endCursor"])
    seen = [json.loads(e["node"]["detail"])["n"] for page in (second, third) for e in page["edges"]]
    assert seen == [3, 2, 1, 0]
    assert first["pageInfo"]["hasNextPage"] and not third["pageInfo"]["hasNextPage"]
    assert len((await _log(api, staff, k="test.event"))["edges"]) == 8  # default page: 50


async def test_bad_filters_and_pages_are_bad_input(api: Api, staff: Caller) -> None:
    await audit.record("test.event")
    for variables in (
        {"f": 0},
        {"f": 101},
        {"a": "garbage"},
        {"u": "not-an-id"},
        {"m": "1"},
        {"o": "x"},
    ):
        assert await api.error_code(LOG, variables, staff.token) == "BAD_USER_INPUT", variables
    # A cursor of another list (a model's, with a uuid id) is not one of this list.
    owner = await api.customer()
    await Model3D.create(
        company_id=owner.user.company_id,
        name="m",
        file_name="m.stl",
        format="stl",
        object_key="models/x",
        wrapped_key="x",
        analysis_status=AnalysisStatus.DONE,
    )
    cursor = (await api.ok("{ models(first: 1) { pageInfo { endCursor } } }", token=staff.token))[
        "models"
    ]["pageInfo"]["endCursor"]
    assert await api.error_code(LOG, {"a": cursor}, staff.token) == "BAD_USER_INPUT"
    assert (await _log(api, staff, k="no.such.kind"))["edges"] == []


async def test_noise_is_not_audited(api: Api, customer: Caller) -> None:
    """Anonymous refusals (scanners) and refused fields of visible objects are not events."""
    await api.error_code("{ users { edges { node { id } } } }")
    await api.error_code('mutation { assignOrder(orderId: "x", providerCompanyId: "y") { id } }')
    upload = await api.upload(box_stl(), "part.stl", customer.token)
    model_id = upload.json()["data"]["uploadModel"]["id"]
    body = await api.gql(
        "query($m: ID!) { model(id: $m) { uploadIp } }", {"m": model_id}, customer.token
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await AuditEvent.filter(kind="permission.denied").count() == 0
    # An operation refused to a signed-in caller is one.
    await api.error_code("{ users { edges { node { id } } } }", token=customer.token)
    assert await AuditEvent.filter(kind="permission.denied", actor_id=customer.user.id).count() == 1
