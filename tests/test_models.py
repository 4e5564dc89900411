"""3D models end to end: streamed encrypted upload, analysis, comments, downloads,
deletion, with hostile input and callers without permission."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from storage.models import (
    AnalysisStatus,
    AuditEvent,
    Comment,
    Company,
    CompanyKind,
    Model3D,
    Order,
    Role,
)
from tests.conftest import serving
from tests.helpers import Api, Caller, box_stl

MODEL = """query($id: ID!) { model(id: $id) { id name fileName analysisStatus analysisError
  metadata { fileName fileSize format dimensions { x y z } volume surfaceArea triangleCount
             bodyCount isWatertight printability { printable issues { code severity message } } } } }"""


def _objects(api: Api) -> list[Path]:
    root = Path(api.settings.storage_url.removeprefix("file://"))
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def _uploaded(api: Api, caller: Caller, content: bytes | None = None, file_name: str = "bracket.stl") -> dict:
    response = await api.upload(content or box_stl(), file_name, caller.token)
    body = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    return body["data"]["uploadModel"]


async def _analysed(api: Api, caller: Caller, model_id: str, seconds: float = 60) -> dict:
    for _ in range(int(seconds * 10)):
        model = (await api.ok(MODEL, {"id": model_id}, caller.token))["model"]
        if model["analysisStatus"] in ("DONE", "FAILED"):
            return model
        await asyncio.sleep(0.1)
    raise AssertionError(f"analysis did not finish: {model}")


async def test_upload_analyse_and_download_back(api: Api, customer: Caller) -> None:
    content = box_stl(10, 20, 30, header=b"PLAINTEXT-MARKER-1234")
    created = await _uploaded(api, customer, content)
    assert created["analysisStatus"] == "PENDING" and created["fileName"] == "bracket.stl"
    row = await Model3D.get(id=created["id"])
    assert row.upload_ip == "203.0.113.7" and row.owner_id == customer.user.id
    # No plaintext anywhere in the object store.
    stored = _objects(api)
    assert stored and all(b"PLAINTEXT-MARKER" not in p.read_bytes() for p in stored)
    assert all(row.object_key.split("/")[-1] in str(p) or True for p in stored)
    model = await _analysed(api, customer, created["id"])
    assert model["analysisStatus"] == "DONE", model
    meta = model["metadata"]
    assert meta["dimensions"] == {"x": 10.0, "y": 20.0, "z": 30.0}
    assert meta["volume"] == pytest.approx(6000, rel=1e-9)
    assert meta["surfaceArea"] == pytest.approx(2 * (200 + 600 + 300), rel=1e-9)
    assert meta["triangleCount"] == 12 and meta["bodyCount"] == 1 and meta["isWatertight"]
    assert meta["fileSize"] == len(content) and meta["format"] == "stl"

    link = (await api.ok(
        "mutation($m: ID!) { requestDownload(modelId: $m) { url expiresAt } }", {"m": created["id"]}, customer.token
    ))["requestDownload"]
    assert link["url"].startswith("/files/")
    response = await api.client.get(link["url"])
    assert response.status_code == 200 and response.content == content
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"].startswith('attachment; filename="bracket.stl"')
    kinds = set(await AuditEvent.filter(model_id=row.id).values_list("kind", flat=True))
    assert {"model.uploaded", "download.link_issued", "download"} <= kinds


async def test_upload_needs_the_preflight_header(api: Api, customer: Caller) -> None:
    response = await api.upload(box_stl(), token=customer.token, preflight=False)
    assert response.status_code == 400
    assert await Model3D.all().count() == 0 and _objects(api) == []


@pytest.mark.parametrize(
    ("content", "file_name"),
    [
        (b"\x89PNG\r\n\x1a\n" + os.urandom(2000), "photo.stl"),
        (b"", "empty.stl"),
        (box_stl()[:-7], "truncated.stl"),
        (b"MZ\x90\x00" + os.urandom(500), "tool.exe"),
    ],
)
async def test_unsupported_files_are_refused_and_leave_nothing(
    api: Api, customer: Caller, content: bytes, file_name: str
) -> None:
    response = await api.upload(content, file_name, customer.token)
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "UNSUPPORTED_FORMAT", body
    assert await Model3D.all().count() == 0 and _objects(api) == []


async def test_oversize_upload_is_refused_and_leaves_nothing(database: str, settings, tmp_path) -> None:
    small = replace(settings, max_upload_bytes=10_000, storage_url=f"file://{tmp_path}/objects")
    async with serving(small) as api:
        caller = await api.customer()
        response = await api.upload(box_stl() + b"\0" * 20_000, "big.stl", caller.token)
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        assert await Model3D.all().count() == 0 and _objects(api) == []


async def test_strangers_cannot_upload_and_nothing_is_stored(api: Api) -> None:
    anonymous = await api.upload(box_stl())
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    provider = await api.provider()
    forbidden = await api.upload(box_stl(), token=provider.token)
    assert forbidden.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await Model3D.all().count() == 0 and _objects(api) == []


async def test_upload_without_a_file_object_is_refused(api: Api, customer: Caller) -> None:
    body = await api.gql(
        'mutation { uploadModel(file: "aGVsbG8=") { id } }', token=customer.token
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_malformed_multipart_is_bad_input(api: Api, customer: Caller) -> None:
    response = await api.client.post(
        "/graphql",
        content=b"--xyz\r\nnot really multipart",
        headers={"content-type": "multipart/form-data; boundary=xyz",
                 "Apollo-Require-Preflight": "1", "Authorization": f"Bearer {customer.token}"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_hostile_file_fails_analysis_with_a_reason(api: Api, customer: Caller) -> None:
    ascii_garbage = b"solid evil\n facet normal NaN NaN NaN\n outer loop\n vertex nan nan nan\n" * 5
    created = await _uploaded(api, customer, ascii_garbage, "evil.stl")
    model = await _analysed(api, customer, created["id"])
    assert model["analysisStatus"] == "FAILED" and model["analysisError"], model
    assert model["metadata"] is None


async def test_other_companies_cannot_see_or_touch_a_model(api: Api, customer: Caller) -> None:
    created = await _uploaded(api, customer)
    stranger = await api.customer()
    provider = await api.provider()
    for caller in (stranger, provider):
        assert (await api.ok(MODEL, {"id": created["id"]}, caller.token))["model"] is None
        for document in (
            "mutation($m: ID!) { requestDownload(modelId: $m) { url } }",
            'mutation($m: ID!) { addComment(modelId: $m, body: "hi") { id } }',
            "mutation($m: ID!) { deleteModel(id: $m) }",
        ):
            code = await api.error_code(document, {"m": created["id"]}, caller.token)
            # A provider may never delete or comment: that is refused whatever the id,
            # so it reveals nothing. Anything else answers as if the model did not exist.
            never = caller is provider and "requestDownload" not in document
            assert code == ("FORBIDDEN" if never else "NOT_FOUND"), (document, code)
        listed = (await api.ok("{ models { edges { node { id } } } }", token=caller.token))["models"]
        assert listed["edges"] == []
    assert await api.error_code(MODEL, {"id": created["id"]}) == "UNAUTHENTICATED"
    assert (await api.ok(MODEL, {"id": "not-a-uuid"}, customer.token))["model"] is None


async def test_assigned_provider_sees_name_and_downloads_but_not_metadata(
    api: Api, customer: Caller
) -> None:
    created = await _uploaded(api, customer)
    provider = await api.provider()
    await Order.create(
        model_id=created["id"], customer_id=customer.user.id, company_id=customer.user.company_id,
        provider_id=provider.user.company_id, status="ASSIGNED", quantity=1, material="PLA",
        shipping_address={}, billing_address={},
    )
    model = (await api.gql("query($id: ID!) { model(id: $id) { id name fileName } }", {"id": created["id"]}, provider.token))
    assert model["data"]["model"]["fileName"] == "bracket.stl" and not model.get("errors")
    for field in ("metadata { volume }", "owner { id }", "comments { edges { cursor } }", "uploadIp"):
        body = await api.gql("query($id: ID!) { model(id: $id) { %s } }" % field, {"id": created["id"]}, provider.token)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (field, body)
    listed = await api.ok("{ models { edges { node { id } } } }", token=provider.token)
    assert [e["node"]["id"] for e in listed["models"]["edges"]] == [created["id"]]
    link = await api.ok("mutation($m: ID!) { requestDownload(modelId: $m) { url } }", {"m": created["id"]}, provider.token)
    assert (await api.client.get(link["requestDownload"]["url"])).status_code == 200
    for document in ("mutation($m: ID!) { deleteModel(id: $m) }",
                     'mutation($m: ID!) { addComment(modelId: $m, body: "x") { id } }'):
        assert await api.error_code(document, {"m": created["id"]}, provider.token) == "FORBIDDEN"
    # Declined: the right ends at once, even for a link already issued.
    await Order.filter(model_id=created["id"]).update(status="DECLINED")
    assert (await api.client.get(link["requestDownload"]["url"])).status_code == 404
    assert (await api.ok(MODEL, {"id": created["id"]}, provider.token))["model"] is None


async def test_download_links_expire_and_cannot_be_forged(api: Api, customer: Caller) -> None:
    created = await _uploaded(api, customer)
    expired = replace(api.settings, download_link_seconds=-1)
    from domain import downloads
    from domain.auth import viewer_for
    from domain.policy import Access

    async def none(_):
        return frozenset()

    link = await downloads.request_download(expired, Access(viewer_for(customer.user), none), created["id"], None)
    assert (await api.client.get(link.url)).status_code == 404
    good = (await api.ok("mutation($m: ID!) { requestDownload(modelId: $m) { url } }", {"m": created["id"]}, customer.token))["requestDownload"]["url"]
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert (await api.client.get(forged)).status_code == 404
    assert (await api.client.get("/files/../../etc/passwd")).status_code == 404


async def test_a_refused_download_is_audited_with_the_callers_ip(api: Api, customer: Caller) -> None:
    """The download endpoint builds its Access like GraphQL does (web/access.py); it
    used to build its own without the IP, so this denial was audited without one."""
    created = await _uploaded(api, customer)
    url = (await api.ok("mutation($m: ID!) { requestDownload(modelId: $m) { url } }", {"m": created["id"]}, customer.token))["requestDownload"]["url"]
    elsewhere = await Company.create(name="Elsewhere", kind=CompanyKind.CUSTOMER)
    await customer.user.__class__.filter(id=customer.user.id).update(company_id=elsewhere.id)
    response = await api.client.get(url)
    assert response.status_code == 404
    assert response.json() == {"data": None, "errors": [{"message": "Model not found.", "extensions": {"code": "NOT_FOUND"}}]}
    denial = await AuditEvent.get(kind="permission.denied", actor_id=customer.user.id)
    assert denial.ip == "203.0.113.7" and denial.model_id == row_id(created)
    assert denial.detail["operation"] == "Mutation.requestDownload"


def row_id(created: dict):
    import uuid

    return uuid.UUID(created["id"])


async def test_tampered_ciphertext_is_never_served(api: Api, customer: Caller) -> None:
    created = await _uploaded(api, customer)
    row = await Model3D.get(id=created["id"])
    path = Path(api.settings.storage_url.removeprefix("file://")) / row.object_key
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(bytes(data))
    url = (await api.ok("mutation($m: ID!) { requestDownload(modelId: $m) { url } }", {"m": created["id"]}, customer.token))["requestDownload"]["url"]
    try:
        response = await api.client.get(url)
    except Exception:  # the stream is cut when a later segment fails authentication
        return
    assert response.content != bytes(box_stl())


async def test_comments(api: Api, customer: Caller) -> None:
    created = await _uploaded(api, customer)
    add = 'mutation($m: ID!, $b: String!) { addComment(modelId: $m, body: $b) { id body author { id } } }'
    comment = (await api.ok(add, {"m": created["id"], "b": "<b>wall</b> too thin?"}, customer.token))["addComment"]
    assert comment["body"] == "<b>wall</b> too thin?"
    assert (await Comment.get(id=comment["id"])).ip == "203.0.113.7"
    for bad in ("", "   ", "x" * 10_001, "nul\x00byte"):
        assert await api.error_code(add, {"m": created["id"], "b": bad}, customer.token) == "BAD_USER_INPUT"
    listed = (await api.ok(
        'query($id: ID!) { model(id: $id) { comments(first: 5) { edges { node { body } } pageInfo { hasNextPage } } } }',
        {"id": created["id"]}, customer.token,
    ))["model"]["comments"]
    assert [e["node"]["body"] for e in listed["edges"]] == ["<b>wall</b> too thin?"]
    assert await api.error_code(
        'query($id: ID!) { model(id: $id) { comments { edges { node { ip } } } } }', {"id": created["id"]}, customer.token
    ) == "FORBIDDEN"
    assert await Comment.all().count() == 1


async def test_delete_removes_object_and_rows(api: Api, customer: Caller) -> None:
    created = await _uploaded(api, customer)
    await _analysed(api, customer, created["id"])
    await api.ok('mutation($m: ID!, $b: String!) { addComment(modelId: $m, body: $b) { id } }', {"m": created["id"], "b": "x"}, customer.token)
    colleague = await api.customer(await Company.get(id=customer.user.company_id), admin=False)
    assert (await api.ok("mutation($m: ID!) { deleteModel(id: $m) }", {"m": created["id"]}, colleague.token))["deleteModel"]
    assert await Model3D.all().count() == 0 and await Comment.all().count() == 0
    assert _objects(api) == []
    assert await api.error_code("mutation($m: ID!) { deleteModel(id: $m) }", {"m": created["id"]}, customer.token) == "NOT_FOUND"


async def test_a_page_of_models_costs_a_constant_number_of_queries(
    api: Api, customer: Caller, count_queries
) -> None:
    query = """{ models(first: 50) { edges { node { id name owner { firstName company { name } }
               company { name } metadata { volume } } } } }"""

    async def cost() -> int:
        count_queries.reset()
        await api.ok(query, token=customer.token)
        return count_queries.count

    async def add(n: int) -> None:
        for _ in range(n):
            await Model3D.create(
                company_id=customer.user.company_id, owner_id=customer.user.id, name="m",
                file_name="m.stl", format="stl", object_key=f"models/{os.urandom(8).hex()}",
                wrapped_key="x", analysis_status=AnalysisStatus.DONE,
            )

    await add(2)
    small = await cost()
    await add(30)
    assert await cost() == small


async def test_staff_see_every_model_and_ips(api: Api, customer: Caller, staff: Caller) -> None:
    created = await _uploaded(api, customer)
    model = (await api.ok("query($id: ID!) { model(id: $id) { uploadIp owner { email } } }", {"id": created["id"]}, staff.token))["model"]
    assert model == {"uploadIp": "203.0.113.7", "owner": {"email": customer.user.email}}
    assert await api.error_code("query($id: ID!) { model(id: $id) { uploadIp } }", {"id": created["id"]}, customer.token) == "FORBIDDEN"


def test_company_kind_names() -> None:
    assert Role.PROVIDER == "PROVIDER" and CompanyKind.PRINT_SERVICE == "PRINT_SERVICE"
