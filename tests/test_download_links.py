"""Issue 10, finding 6: download links end with the session or token that asked for them,
resume with HTTP Range, follow a change of rights within one document; file names show
no bidi tricks."""

from __future__ import annotations

import os
import struct

import pytest

from storage.models import AuditEvent, Model3D, Order
from tests.helpers import PASSWORD, Api, Caller, box_stl
from tests.test_models import _uploaded

LINK = "mutation($m: ID!) { requestDownload(modelId: $m) { url } }"


async def _link(api: Api, caller: Caller, model_id: str, token: str | None = None) -> str:
    return (await api.ok(LINK, {"m": model_id}, token or caller.token))["requestDownload"]["url"]


async def test_a_link_stops_working_after_log_out(api: Api, customer: Caller) -> None:
    model = await _uploaded(api, customer)
    url = await _link(api, customer, model["id"])
    assert (await api.client.get(url)).status_code == 200
    await api.ok("mutation { logOut }", token=customer.token)
    assert (await api.client.get(url)).status_code == 404


async def test_a_link_stops_working_when_its_api_token_is_revoked(
    api: Api, customer: Caller
) -> None:
    model = await _uploaded(api, customer)
    token = (await api.ok('mutation { createApiToken(name: "ci") }', token=customer.token))[
        "createApiToken"
    ]
    url = await _link(api, customer, model["id"], token)
    assert (await api.client.get(url)).status_code == 200
    await api.ok('mutation { revokeApiToken(name: "ci") }', token=customer.token)
    assert (await api.client.get(url)).status_code == 404


async def test_a_link_stops_working_when_the_session_is_revoked_by_a_password_change(
    api: Api, customer: Caller
) -> None:
    from domain import auth

    model = await _uploaded(api, customer)
    other = await auth.start_session(api.settings, customer.user, "198.51.100.9")
    url = await _link(api, customer, model["id"], other.token)
    change = 'mutation($p: String!) { changePassword(currentPassword: $p, newPassword: "another passphrase 99") }'
    await api.ok(change, {"p": PASSWORD}, customer.token)
    assert (await api.client.get(url)).status_code == 404


async def test_range_requests_resume_a_download(api: Api, customer: Caller) -> None:
    content = box_stl(header=os.urandom(80))
    model = await _uploaded(api, customer, content)
    url = await _link(api, customer, model["id"])
    whole = await api.client.get(url)
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-length"] == str(len(content))
    size = len(content)
    for header, start, end in (
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, size - 1),
        ("bytes=-50", size - 50, size - 1),
        (f"bytes=10-{size + 1000}", 10, size - 1),
    ):
        part = await api.client.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == content[start : end + 1], header
        assert part.headers["content-range"] == f"bytes {start}-{end}/{size}"
    unsatisfiable = await api.client.get(url, headers={"Range": f"bytes={size}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{size}"
    stale = await api.client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == content


async def test_a_large_download_resumes_across_encryption_chunks(
    api: Api, customer: Caller
) -> None:
    triangles = 64_000  # about 3 MiB: several chunks of the encrypted stream
    facets = b"".join(struct.pack("<12fH", 0, 0, 0, i, 0, 0, i, 1, 0, i, 0, 1, 0)
                      for i in range(triangles))
    content = b"big".ljust(80, b" ") + struct.pack("<I", triangles) + facets
    model = await _uploaded(api, customer, content)
    url = await _link(api, customer, model["id"])
    first = await api.client.get(url, headers={"Range": "bytes=0-1048575"})
    rest = await api.client.get(url, headers={"Range": "bytes=1048576-"})
    assert first.status_code == rest.status_code == 206
    assert first.content + rest.content == content


async def test_a_provider_that_declines_gets_no_link_in_the_same_document(
    api: Api, customer: Caller
) -> None:
    model = await _uploaded(api, customer)
    provider = await api.provider()
    order = await Order.create(
        model_id=model["id"], customer_id=customer.user.id, company_id=customer.user.company_id,
        provider_id=provider.user.company_id, status="ASSIGNED", quantity=1, material="PLA",
        shipping_address={}, billing_address={},
    )
    document = """mutation($m: ID!, $o: ID!) {
      before: requestDownload(modelId: $m) { url }
      updateOrderStatus(orderId: $o, status: DECLINED) { status }
      after: requestDownload(modelId: $m) { url } }"""
    body = await api.gql(document, {"m": model["id"], "o": str(order.id)}, provider.token)
    # requestDownload is non-null: its refusal blanks the whole answer (GraphQL).
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        (["after"], "NOT_FOUND")
    ]
    assert (await Order.get(id=order.id)).status == "DECLINED"
    issued = await AuditEvent.filter(kind="download.link_issued", model_id=model["id"]).count()
    assert issued == 1  # "before" only


@pytest.mark.parametrize("name", ["invoice\u202ejpg.stl", "a\u2066b\u2069c\u200f.stl", "x\u061cy.stl"])
async def test_bidi_controls_in_file_names_are_neutralised(
    api: Api, customer: Caller, name: str
) -> None:
    model = await _uploaded(api, customer, file_name=name)
    shown = model["fileName"]
    assert not any(ch in shown for ch in "\u202e\u2066\u2069\u200f\u061c")
    assert shown.endswith(".stl")
    # A name stored before the fix is cleaned on the way out too.
    await Model3D.filter(id=model["id"]).update(file_name="evil\u202egpj.stl")
    url = await _link(api, customer, model["id"])
    disposition = (await api.client.get(url)).headers["content-disposition"]
    assert "%E2%80%AE" not in disposition and "\u202e" not in disposition

