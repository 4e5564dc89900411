"""storage/prepared.py: token look-ups with SQL built once, on both backends."""

from __future__ import annotations

import pytest
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from domain import auth
from domain.secrets_box import token_digest
from storage.models import ApiToken, Company, Session
from storage.prepared import PreparedLookup
from storage.queries import api_token_by_digest, session_by_digest
from tests.helpers import Api


async def test_finds_what_tortoise_finds_with_user_and_company(api: Api) -> None:
    caller = await api.customer()
    digest = token_digest(api.settings.secret_key, caller.token)
    expected = await Session.get(token_hash=digest).select_related("user__company")
    for _ in range(2):  # built on the first call, reused on the second
        found = await session_by_digest.first(digest)
        assert found is not None and found.id == expected.id
        assert found.user.id == caller.user.id and found.user.first_name == "Max"  # opened
        assert found.user.email == caller.user.email
        assert found.user.company.name == expected.user.company.name == "Acme GmbH"
        assert found.expires_at == expected.expires_at


async def test_api_tokens_are_found_too(api: Api) -> None:
    caller = await api.customer()
    viewer, _ = await auth.authenticate(api.settings, caller.token)
    _, secret = await auth.create_api_token(api.settings, viewer, "ci", None)
    found = await api_token_by_digest.first(token_digest(api.settings.secret_key, secret))
    assert found is not None and found.user.id == caller.user.id
    assert isinstance(found.user.company, Company)


@pytest.mark.parametrize("value", ["", "nope", "' OR 1=1 --", "x" * 10_000, "é\u202e"])
async def test_other_values_find_nothing(api: Api, value: str) -> None:
    await api.customer()
    assert await session_by_digest.first(value) is None


async def test_a_value_that_is_not_a_string_is_refused(database: str) -> None:
    with pytest.raises(TypeError):
        await session_by_digest.first(b"digest")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await session_by_digest.first("a\x00prepared-lookup-value\x00b")


async def test_queries_that_do_not_bind_the_value_once_are_refused(database: str) -> None:
    unbound = PreparedLookup(Session, lambda value: Session.filter(revoked_at=None))
    with pytest.raises(ValueError, match="exactly once"):
        await unbound.first("x")
    twice = PreparedLookup(
        Session, lambda value: Session.filter(Q(token_hash=value) | Q(token_hash=value + "x"))
    )
    with pytest.raises(ValueError, match="exactly once"):
        await twice.first("x")
    other_model = PreparedLookup(Session, lambda value: ApiToken.filter(token_hash=value))
    with pytest.raises(ValueError, match="model"):
        await other_model.first("x")


async def test_inside_a_transaction_it_reads_through_the_transaction(api: Api) -> None:
    """On SQLite the default connection waits for the transaction's lock: reading
    outside it would wait forever; and the row written inside is visible only there."""
    caller = await api.customer()
    async with in_transaction():
        issued = await auth.start_session(api.settings, caller.user, "198.51.100.7")
        digest = token_digest(api.settings.secret_key, issued.token)
        found = await session_by_digest.first(digest)
        assert found is not None and found.user.id == caller.user.id
