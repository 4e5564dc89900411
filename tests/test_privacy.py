"""GDPR rights: the caller's data exported whole; an account erased by anonymisation."""

from __future__ import annotations

import json

import pyotp

from storage.models import (
    ApiToken,
    AuditEvent,
    Comment,
    Company,
    Model3D,
    Order,
    OrderStatus,
    Session,
    User,
)
from tests.helpers import ADDRESS_DICT, PASSWORD, Api, Caller, box_stl, next_step_code

EXPORT = "mutation { exportMyData }"
DELETE = "mutation($p: String!, $o: String) { deleteMyAccount(password: $p, otp: $o) }"


async def _activity(api: Api, caller: Caller) -> str:
    body = (await api.upload(box_stl(), "mine.stl", caller.token)).json()
    model_id = body["data"]["uploadModel"]["id"]
    await api.ok(
        'mutation($m: ID!) { addComment(modelId: $m, body: "my note") { id } }',
        {"m": model_id},
        caller.token,
    )
    await Order.create(
        model_id=model_id,
        customer_id=caller.user.id,
        company_id=caller.user.company_id,
        status=OrderStatus.DELIVERED,
        quantity=2,
        material="PLA",
        shipping_address=ADDRESS_DICT,
        billing_address=ADDRESS_DICT,
        billing_info="VAT DE123",
        ip="203.0.113.7",
    )
    await api.ok('mutation { createApiToken(name: "slicer") }', token=caller.token)
    return model_id


async def test_export_holds_every_personal_datum(api: Api, customer: Caller) -> None:
    model_id = await _activity(api, customer)
    exported = json.loads((await api.ok(EXPORT, token=customer.token))["exportMyData"])
    assert exported["account"]["email"] == customer.user.email
    assert exported["account"]["address"]["city"] == "Berlin"
    assert [m["id"] for m in exported["modelsUploaded"]] == [model_id]
    assert exported["modelsUploaded"][0]["upload_ip"] == "203.0.113.7"
    assert [c["body"] for c in exported["comments"]] == ["my note"]
    assert exported["orders"][0]["billing_info"] == "VAT DE123"
    assert [t["name"] for t in exported["apiTokens"]] == ["slicer"]
    assert {"model.uploaded", "comment.added"} <= {e["kind"] for e in exported["auditEvents"]}
    assert exported["sessions"]
    text = json.dumps(exported)
    assert "password" not in text.replace("password_hash", "") and "token_hash" not in text


async def test_export_needs_an_account(api: Api) -> None:
    assert await api.error_code(EXPORT) == "UNAUTHENTICATED"


async def test_delete_needs_the_password_and_erases_the_person(api: Api, customer: Caller) -> None:
    model_id = await _activity(api, customer)
    assert (
        await api.error_code(DELETE, {"p": "wrong password 1234"}, customer.token)
        == "BAD_USER_INPUT"
    )
    assert (await User.get(id=customer.user.id)).deleted_at is None
    assert (await api.ok(DELETE, {"p": PASSWORD}, customer.token))["deleteMyAccount"] is True
    user = await User.get(id=customer.user.id)
    assert user.deleted_at is not None and customer.user.email not in user.email
    assert (user.first_name, user.phone, user.address, user.signup_ip) == (
        "Deleted",
        None,
        None,
        None,
    )
    # Sessions and tokens stop at once.
    assert await api.error_code("{ me { id } }", token=customer.token) == "UNAUTHENTICATED"
    assert not await Session.filter(user_id=user.id).exists()
    assert not await ApiToken.filter(user_id=user.id).exists()
    # The company keeps its model and the order stays for retention, without the person's data.
    model = await Model3D.get(id=model_id)
    assert model.upload_ip is None and model.owner_id == user.id
    order = await Order.get(customer_id=user.id)
    assert order.ip is None and order.shipping_address == {"erased": True}
    assert order.billing_info == "VAT DE123"  # invoices must be kept
    assert (await Comment.get(author_id=user.id)).ip is None
    assert not await AuditEvent.filter(actor_id=user.id, ip__not_isnull=True).exists()
    # The address is free again, and the old password opens nothing.
    assert (
        await api.error_code(
            "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }",
            {"e": customer.user.email, "p": PASSWORD},
        )
        == "UNAUTHENTICATED"
    )


async def test_delete_needs_the_code_when_enrolled(api: Api, customer: Caller) -> None:
    setup = (await api.ok("mutation { beginTotpEnrollment { secret } }", token=customer.token))[
        "beginTotpEnrollment"
    ]
    await api.ok(
        "mutation($c: String!) { confirmTotpEnrollment(code: $c) }",
        {"c": pyotp.TOTP(setup["secret"]).now()},
        customer.token,
    )
    assert await api.error_code(DELETE, {"p": PASSWORD}, customer.token) == "MFA_REQUIRED"
    assert (await User.get(id=customer.user.id)).deleted_at is None
    code = next_step_code(setup["secret"])
    assert (await api.ok(DELETE, {"p": PASSWORD, "o": code}, customer.token))["deleteMyAccount"]


async def test_deleted_people_still_show_as_authors(api: Api, customer: Caller) -> None:
    model_id = await _activity(api, customer)
    colleague = await api.customer(await Company.get(id=customer.user.company_id), admin=False)
    await api.ok(DELETE, {"p": PASSWORD}, customer.token)
    model = await api.ok(
        "query($id: ID!) { model(id: $id) { owner { firstName lastName } comments { edges { node { author { firstName } } } } } }",
        {"id": model_id},
        colleague.token,
    )
    assert model["model"]["owner"] == {"firstName": "Deleted", "lastName": "User"}
