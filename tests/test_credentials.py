"""Issue 10, finding 1: a stolen token is neither forever nor able to lock the owner out.

Credential changes refuse API tokens (FORBIDDEN) and stale sessions (REAUTH_REQUIRED);
changePassword ends the other sessions; sessions and API tokens are listed on `me` and
revocable; recovery codes can be regenerated; invitations can be revoked.
"""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest

from domain import auth
from storage.models import ApiToken, Invitation, Session
from tests.helpers import PASSWORD, Api, Caller, current_code, next_step_code

NEW_PASSWORD = "an entirely new passphrase 77"
LOG_IN = "mutation($e: String!, $p: String!, $o: String) { logIn(email: $e, password: $p, otp: $o) { token } }"
CREATE_TOKEN = "mutation($p: String) { createApiToken(name: \"ci\", password: $p) }"
BEGIN_TOTP = "mutation($p: String) { beginTotpEnrollment(password: $p) { secret recoveryCodes } }"
CHANGE = """mutation($c: String!, $n: String!, $o: String) {
  changePassword(currentPassword: $c, newPassword: $n, otp: $o) }"""
ME_SECURITY = "{ me { emailVerified sessions { id current ip userAgent createdAt lastSeenAt } apiTokens { name createdAt lastUsedAt } } }"


async def _age_sessions(caller: Caller, minutes: int = 11) -> None:
    """The caller logged in `minutes` ago: past the 10-minute re-authentication window."""
    from tortoise.timezone import now

    await Session.filter(user_id=caller.user.id).update(created_at=now() - timedelta(minutes=minutes))


async def _api_token(api: Api, caller: Caller) -> str:
    return (await api.ok(CREATE_TOKEN, {"p": PASSWORD}, caller.token))["createApiToken"]


async def test_an_api_token_cannot_mint_tokens_enroll_totp_or_change_credentials(
    api: Api, customer: Caller
) -> None:
    stolen = await _api_token(api, customer)
    assert await api.error_code(CREATE_TOKEN, {"p": PASSWORD}, stolen) == "FORBIDDEN"
    assert await api.error_code(BEGIN_TOTP, {"p": PASSWORD}, stolen) == "FORBIDDEN"
    # Nor confirm an enrollment a session began.
    await api.ok(BEGIN_TOTP, {"p": PASSWORD}, customer.token)
    assert await api.error_code(
        'mutation { confirmTotpEnrollment(code: "123456") }', token=stolen
    ) == "FORBIDDEN"
    assert await api.error_code(CHANGE, {"c": PASSWORD, "n": NEW_PASSWORD}, stolen) == "FORBIDDEN"
    assert await api.error_code(
        'mutation { regenerateRecoveryCodes(password: "x", otp: "123456") }', token=stolen
    ) == "FORBIDDEN"
    assert await api.error_code(
        "mutation($p: String!) { deleteMyAccount(password: $p) }", {"p": PASSWORD}, stolen
    ) == "FORBIDDEN"
    assert await ApiToken.filter(user_id=customer.user.id).count() == 1
    # Nothing changed: the owner still logs in with the password alone.
    body = await api.ok(LOG_IN, {"e": customer.user.email, "p": PASSWORD})
    assert body["logIn"]["token"]


async def test_a_stale_session_needs_the_password_for_credential_changes(
    api: Api, customer: Caller
) -> None:
    await _age_sessions(customer)
    assert await api.error_code(CREATE_TOKEN, None, customer.token) == "REAUTH_REQUIRED"
    assert await api.error_code(BEGIN_TOTP, None, customer.token) == "REAUTH_REQUIRED"
    assert await api.error_code(CREATE_TOKEN, {"p": "wrong password 123"}, customer.token) == (
        "BAD_USER_INPUT"
    )
    assert (await api.ok(CREATE_TOKEN, {"p": PASSWORD}, customer.token))["createApiToken"]
    setup = (await api.ok(BEGIN_TOTP, {"p": PASSWORD}, customer.token))["beginTotpEnrollment"]
    assert setup["secret"]


async def test_a_fresh_log_in_is_proof_enough_for_ten_minutes(api: Api, customer: Caller) -> None:
    await _age_sessions(customer, minutes=9)
    assert (await api.ok(CREATE_TOKEN, None, customer.token))["createApiToken"]


async def test_change_password_revokes_the_other_sessions(api: Api, customer: Caller) -> None:
    other = await auth.start_session(api.settings, customer.user, "198.51.100.9")
    await api.ok(CHANGE, {"c": PASSWORD, "n": NEW_PASSWORD}, customer.token)
    assert await api.error_code("{ me { id } }", token=other.token) == "UNAUTHENTICATED"
    assert (await api.ok("{ me { id } }", token=customer.token))["me"]["id"]  # the caller's stays
    assert await api.error_code(LOG_IN, {"e": customer.user.email, "p": PASSWORD}) == (
        "UNAUTHENTICATED"
    )
    assert (await api.ok(LOG_IN, {"e": customer.user.email, "p": NEW_PASSWORD}))["logIn"]["token"]
    assert await api.error_code(CHANGE, {"c": "wrong password 123", "n": PASSWORD}, customer.token) == (
        "BAD_USER_INPUT"
    )


async def test_change_password_needs_the_otp_when_totp_is_enrolled(api: Api) -> None:
    staff = await api.staff()
    assert staff.totp_secret
    assert await api.error_code(CHANGE, {"c": PASSWORD, "n": NEW_PASSWORD}, staff.token) == (
        "MFA_REQUIRED"
    )
    await api.ok(
        CHANGE, {"c": PASSWORD, "n": NEW_PASSWORD, "o": current_code(staff.totp_secret)}, staff.token
    )


async def test_sessions_and_tokens_are_listed_for_oneself_and_revocable(
    api: Api, customer: Caller
) -> None:
    await _api_token(api, customer)
    other = await auth.start_session(api.settings, customer.user, "198.51.100.9", "Firefox/140")
    me = (await api.ok(ME_SECURITY, token=customer.token))["me"]
    assert me["emailVerified"] is False
    assert [t["name"] for t in me["apiTokens"]] == ["ci"]
    by_current = {s["current"]: s for s in me["sessions"]}
    assert len(me["sessions"]) == 2 and by_current[False]["userAgent"] == "Firefox/140"
    assert by_current[False]["ip"] == "198.51.100.9"
    revoke = "mutation($i: ID!) { revokeSession(id: $i) }"
    await api.ok(revoke, {"i": by_current[False]["id"]}, customer.token)
    assert await api.error_code("{ me { id } }", token=other.token) == "UNAUTHENTICATED"
    assert await api.error_code(revoke, {"i": by_current[False]["id"]}, customer.token) == (
        "NOT_FOUND"
    )
    await api.ok('mutation { revokeApiToken(name: "ci") }', token=customer.token)
    assert (await api.ok(ME_SECURITY, token=customer.token))["me"]["apiTokens"] == []


async def test_nobody_else_sees_or_revokes_ones_sessions(api: Api, customer: Caller) -> None:
    colleague = await api.member(await customer.user.company, customer.user.role)
    admin_view = await api.gql(
        "query { me { company { members { id sessions { id } apiTokens { name } emailVerified } } } }",
        token=customer.token,
    )
    members = admin_view["data"]["me"]["company"]["members"]
    theirs = next(m for m in members if m["id"] == str(colleague.user.id))
    assert theirs["sessions"] is None and theirs["apiTokens"] is None
    assert {e["extensions"]["code"] for e in admin_view["errors"]} == {"FORBIDDEN"}
    their_session = await Session.get(user_id=colleague.user.id)
    assert await api.error_code(
        "mutation($i: ID!) { revokeSession(id: $i) }", {"i": str(their_session.id)}, customer.token
    ) == "NOT_FOUND"


async def test_recovery_codes_regenerate_with_password_and_otp(api: Api) -> None:
    staff = await api.staff()
    assert staff.totp_secret
    regenerate = "mutation($p: String!, $o: String!) { regenerateRecoveryCodes(password: $p, otp: $o) }"
    assert await api.error_code(regenerate, {"p": PASSWORD, "o": "000000"}, staff.token) == (
        "MFA_REQUIRED"
    )
    codes = (await api.ok(regenerate, {"p": PASSWORD, "o": next_step_code(staff.totp_secret)}, staff.token))[
        "regenerateRecoveryCodes"
    ]
    assert len(codes) >= 8 and len(set(codes)) == len(codes)
    # A new code logs in (as the second factor).
    body = await api.ok(LOG_IN, {"e": staff.user.email, "p": PASSWORD, "o": codes[0]})
    assert body["logIn"]["token"]


async def test_totp_enrollment_by_a_stolen_session_needs_the_password(
    api: Api, customer: Caller
) -> None:
    """The lock-out of the issue: enrollment then MFA_REQUIRED for the owner."""
    await _age_sessions(customer)
    assert await api.error_code(BEGIN_TOTP, None, customer.token) == "REAUTH_REQUIRED"
    body = await api.ok(LOG_IN, {"e": customer.user.email, "p": PASSWORD})
    assert body["logIn"]["token"]
    setup = (await api.ok(BEGIN_TOTP, {"p": PASSWORD}, customer.token))["beginTotpEnrollment"]
    assert pyotp.TOTP(setup["secret"]).now()


async def test_revoke_invitation(api: Api, customer: Caller) -> None:
    company_id = str(customer.user.company_id)
    invite = """mutation($e: String!, $c: ID!) {
      inviteUser(email: $e, role: CUSTOMER, companyId: $c) { token } }"""
    await api.ok(invite, {"e": "new.person@example.com", "c": company_id}, customer.token)
    revoke = "mutation($e: String!, $c: ID!) { revokeInvitation(email: $e, companyId: $c) }"
    outsider = await api.customer()
    assert await api.error_code(revoke, {"e": "new.person@example.com", "c": company_id}, outsider.token) == (
        "NOT_FOUND"
    )
    await api.ok(revoke, {"e": "new.person@example.com", "c": company_id}, customer.token)
    assert await Invitation.filter(company_id=customer.user.company_id).count() == 0
    assert await api.error_code(revoke, {"e": "new.person@example.com", "c": company_id}, customer.token) == (
        "NOT_FOUND"
    )


@pytest.mark.parametrize("session_id", ["9" * 30, str(2**63), "-1", "\uff11\uff12", "1e3", ""])
async def test_revoke_session_with_an_id_no_row_can_have_is_not_found(
    api: Api, customer: Caller, session_id: str
) -> None:
    """Found by the fuzzer: an id past SQLite's INTEGER range answered INTERNAL."""
    assert await api.error_code(
        "mutation($i: ID!) { revokeSession(id: $i) }", {"i": session_id}, customer.token
    ) == "NOT_FOUND"
