"""Abusive documents are refused whole, before anything runs."""

from __future__ import annotations

from storage.models import AuditEvent
from tests.helpers import PASSWORD, Api, Caller


async def test_aliased_log_in_attempts_are_refused_as_a_whole(api: Api, customer: Caller) -> None:
    guesses = " ".join(
        f'a{i}: logIn(email: "{customer.user.email}", password: "guess{i:04d} wrong") {{ token }}'
        for i in range(200)
    )
    body = await api.gql(f"mutation {{ {guesses} }}")
    assert body.get("data") is None
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
    assert not await AuditEvent.filter(kind="login.failed").exists()  # nothing ran


async def test_two_log_ins_in_one_document_are_refused(api: Api, customer: Caller) -> None:
    login = f'logIn(email: "{customer.user.email}", password: "{PASSWORD}") {{ token }}'
    body = await api.gql(f"mutation {{ a: {login} b: {login} }}")
    assert body.get("data") is None and "only once" in body["errors"][0]["message"]
    for field in (
        'confirmTotpEnrollment(code: "1")',
        'acceptInvitation(token: "x", password: "y", firstName: "a", lastName: "b") { token }',
    ):
        body = await api.gql(f"mutation {{ a: {field} b: {field} }}", token=customer.token)
        assert body.get("data") is None, body


async def test_a_document_asking_for_too_much_is_refused(api: Api, customer: Caller) -> None:
    deep = "{ models(first: 100) { edges { node { comments(first: 100) { edges { node { author { company { members { id firstName lastName } } } } } } } } } }"
    body = await api.gql(deep, token=customer.token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "too expensive" in body["errors"][0]["message"]


async def test_depth_and_alias_limits(api: Api, customer: Caller) -> None:
    deep = "{ me { company { members { company { members { company { members { company { members { company { members { id } } } } } } } } } } } }"
    assert (await api.gql(deep, token=customer.token))["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    aliases = " ".join(f"a{i}: me {{ id }}" for i in range(100))
    assert (await api.gql(f"{{ {aliases} }}", token=customer.token))["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_normal_queries_pass(api: Api, customer: Caller) -> None:
    await api.ok("{ me { id company { members { id } } } models { edges { node { id } } } }", token=customer.token)
