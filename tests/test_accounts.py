"""Accounts: sign-up, log-in, sessions, TOTP, invitations, API tokens, with hostile input."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pyotp
import pytest
from tortoise.timezone import now

from domain import passwords
from storage.models import (
    ApiToken,
    AuditEvent,
    Company,
    CompanyKind,
    Invitation,
    RecoveryCode,
    Session,
    User,
)
from storage.queries import invitations_for_email
from tests.helpers import ADDRESS, PASSWORD, Api, Caller, email, next_step_code

SIGN_UP = "mutation($i: SignUpInput!) { signUp(input: $i) { token expiresAt user { id email company { name } } } }"
LOG_IN = "mutation($e: String!, $p: String!, $o: String) { logIn(email: $e, password: $p, otp: $o) { token user { id } } }"


def sign_up_input(**overrides) -> dict:
    data = {
        "email": email("new"),
        "password": PASSWORD,
        "firstName": "Ada",
        "lastName": "Lovelace",
        "companyName": "Analytical Engines Ltd",
        "address": ADDRESS,
        "phone": "+49 30 1234567",
    }
    data.update(overrides)
    return data


async def _counts() -> tuple[int, int, int]:
    return await User.all().count(), await Company.all().count(), await Session.all().count()


# --- sign-up -------------------------------------------------------------------------------


async def test_sign_up_creates_company_admin_and_records_ip(api: Api) -> None:
    data = sign_up_input(email="Ada.Lovelace@Example.COM")
    result = (await api.ok(SIGN_UP, {"i": data}))["signUp"]
    user = await User.get(id=result["user"]["id"]).select_related("company")
    assert user.email == "ada.lovelace@example.com"
    assert user.is_company_admin and user.role == "CUSTOMER"
    assert user.company.kind == CompanyKind.CUSTOMER and user.company.name == data["companyName"]
    assert user.signup_ip == "203.0.113.7"
    assert user.phone == "+49 30 1234567" and user.address["city"] == "Berlin"
    assert user.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert PASSWORD not in user.password_hash
    events = await AuditEvent.filter(kind="signup", actor_id=user.id)
    assert [event.ip for event in events] == ["203.0.113.7"]
    me = await api.ok("{ me { email } }", token=result["token"])
    assert me["me"]["email"] == "ada.lovelace@example.com"
    # IP addresses are for staff only, even one's own.
    assert await api.error_code("{ me { signupIp } }", token=result["token"]) == "FORBIDDEN"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": "x" * 250 + "@example.com"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "password1234"}, "password"),  # among the most common passwords
        ({"password": "qwertyuiop123"}, "password"),
        ({"password": "a" * 300}, "password"),
        ({"firstName": ""}, "firstName"),
        ({"firstName": "x" * 101}, "firstName"),
        ({"lastName": "Evil\u0000Null"}, "lastName"),
        ({"companyName": "   "}, "companyName"),
        ({"phone": "call me maybe"}, "phone"),
        ({"address": {**ADDRESS, "country": "XX"}}, "address.country"),
        ({"address": {**ADDRESS, "country": "Germany"}}, "address.country"),
        ({"address": {**ADDRESS, "postalCode": "<script>"}}, "address.postalCode"),
        ({"address": {**ADDRESS, "city": ""}}, "address.city"),
    ],
)
async def test_sign_up_refuses_bad_input_and_writes_nothing(
    api: Api, overrides: dict, field: str
) -> None:
    before = await _counts()
    body = await api.gql(SIGN_UP, {"i": sign_up_input(**overrides)})
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body
    assert error["extensions"].get("field") == field, body
    assert await _counts() == before


async def test_sign_up_refuses_wrong_types(api: Api) -> None:
    before = await _counts()
    for bad in ({"email": 42}, {"address": "Berlin"}, {"password": None}):
        body = await api.gql(SIGN_UP, {"i": sign_up_input(**bad)})
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert await _counts() == before


async def test_email_is_unique_regardless_of_case(api: Api) -> None:
    address = email("dup")
    await api.ok(SIGN_UP, {"i": sign_up_input(email=address)})
    before = await _counts()
    body = await api.gql(SIGN_UP, {"i": sign_up_input(email=address.upper())})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await _counts() == before


async def test_long_passphrase_is_accepted(api: Api) -> None:
    phrase = "the quick brown fox jumps over the lazy dog near the riverbank at dawn " * 1
    assert len(phrase) >= 64
    await api.ok(SIGN_UP, {"i": sign_up_input(password=phrase)})


# --- log-in and sessions -------------------------------------------------------------------


async def test_log_in_and_log_out_revokes_at_once(api: Api) -> None:
    data = sign_up_input()
    await api.ok(SIGN_UP, {"i": data})
    token = (await api.ok(LOG_IN, {"e": data["email"].upper(), "p": PASSWORD}))["logIn"]["token"]
    assert (await api.ok("{ me { id } }", token=token))["me"]
    assert (await api.ok("mutation { logOut }", token=token))["logOut"] is True
    assert await api.error_code("{ me { id } }", token=token) == "UNAUTHENTICATED"


async def test_wrong_password_and_unknown_email_answer_alike(api: Api, customer) -> None:
    wrong = await api.gql(LOG_IN, {"e": customer.user.email, "p": "wrong password 123456"})
    unknown = await api.gql(LOG_IN, {"e": email("nobody"), "p": PASSWORD})
    assert wrong["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert wrong["errors"][0]["message"] == unknown["errors"][0]["message"]
    assert await AuditEvent.filter(kind="login.failed", actor_id=customer.user.id).exists()


async def test_expired_sessions_are_refused(api: Api, customer: Caller) -> None:
    session = await Session.get(user_id=customer.user.id)
    session.expires_at = now() - timedelta(seconds=1)
    await session.save()
    assert await api.error_code("{ me { id } }", token=customer.token) == "UNAUTHENTICATED"


async def test_idle_sessions_are_refused(api: Api, customer: Caller) -> None:
    idle = api.settings.session_idle_seconds + 1
    await Session.filter(user_id=customer.user.id).update(
        last_seen_at=now() - timedelta(seconds=idle)
    )
    assert await api.error_code("{ me { id } }", token=customer.token) == "UNAUTHENTICATED"


async def test_garbage_tokens_are_refused(api: Api) -> None:
    for token in ("garbage", "pvs_" + "A" * 43, "pvt_nope", "x" * 5000):
        assert await api.error_code("{ me { id } }", token=token) == "UNAUTHENTICATED"


async def test_password_is_rehashed_when_parameters_change(api: Api, customer: Caller) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1).hash(PASSWORD)
    await User.filter(id=customer.user.id).update(password_hash=weak)
    await api.ok(LOG_IN, {"e": customer.user.email, "p": PASSWORD})
    stored = (await User.get(id=customer.user.id)).password_hash
    assert stored != weak and not passwords.needs_rehash(stored)


# --- TOTP ------------------------------------------------------------------------------------


async def _enroll(api: Api, caller: Caller) -> tuple[str, list[str]]:
    setup = (
        await api.ok(
            "mutation { beginTotpEnrollment { secret provisioningUri recoveryCodes } }",
            token=caller.token,
        )
    )["beginTotpEnrollment"]
    assert setup["provisioningUri"].startswith("otpauth://totp/")
    assert len(setup["recoveryCodes"]) == 10
    code = pyotp.TOTP(setup["secret"]).now()
    bad = await api.gql('mutation { confirmTotpEnrollment(code: "000000") }', token=caller.token)
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    await api.ok(
        "mutation($c: String!) { confirmTotpEnrollment(code: $c) }", {"c": code}, caller.token
    )
    return setup["secret"], setup["recoveryCodes"]


async def test_totp_enrollment_then_log_in_needs_a_code(api: Api, customer: Caller) -> None:
    secret, _ = await _enroll(api, customer)
    assert (await api.ok("{ me { mfaEnabled } }", token=customer.token))["me"]["mfaEnabled"]
    login = {"e": customer.user.email, "p": PASSWORD}
    assert await api.error_code(LOG_IN, login) == "MFA_REQUIRED"
    assert await api.error_code(LOG_IN, {**login, "o": "123456"}) == "MFA_REQUIRED"
    code = next_step_code(secret)  # one step of drift is allowed
    assert (await api.ok(LOG_IN, {**login, "o": code}))["logIn"]["token"]
    # The same code again is a replay.
    assert await api.error_code(LOG_IN, {**login, "o": code}) == "MFA_REQUIRED"


async def test_totp_secret_is_stored_encrypted(api: Api, customer: Caller) -> None:
    secret, _ = await _enroll(api, customer)
    user = await User.get(id=customer.user.id)
    assert user.totp_secret_sealed and secret not in user.totp_secret_sealed


async def test_codes_outside_the_drift_window_are_refused(api: Api, customer: Caller) -> None:
    import time

    secret, _ = await _enroll(api, customer)
    generator = pyotp.TOTP(secret)
    far = generator.generate_otp(int(time.time()) // generator.interval + 3)
    code = await api.error_code(LOG_IN, {"e": customer.user.email, "p": PASSWORD, "o": far})
    assert code == "MFA_REQUIRED"


async def test_concurrent_replay_lets_only_one_through(api: Api, customer: Caller) -> None:
    secret, _ = await _enroll(api, customer)
    code = next_step_code(secret)
    login = {"e": customer.user.email, "p": PASSWORD, "o": code}
    results = await asyncio.gather(*(api.gql(LOG_IN, login) for _ in range(4)))
    assert sum(1 for r in results if not r.get("errors")) == 1


async def test_recovery_codes_work_once(api: Api, customer: Caller) -> None:
    _, codes = await _enroll(api, customer)
    login = {"e": customer.user.email, "p": PASSWORD, "o": codes[0]}
    assert (await api.ok(LOG_IN, login))["logIn"]["token"]
    assert await api.error_code(LOG_IN, login) == "MFA_REQUIRED"
    stored = await RecoveryCode.filter(user_id=customer.user.id).values_list("code_hash", flat=True)
    assert len(stored) == 10 and all(c not in h for c in codes for h in stored)


async def test_enrollment_cannot_be_restarted_once_enabled(api: Api, customer: Caller) -> None:
    await _enroll(api, customer)
    body = await api.gql("mutation { beginTotpEnrollment { secret } }", token=customer.token)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_staff_cannot_log_in_without_a_code(api: Api, staff: Caller) -> None:
    login = {"e": staff.user.email, "p": PASSWORD}
    assert await api.error_code(LOG_IN, login) == "MFA_REQUIRED"
    assert staff.totp_secret
    assert (await api.ok(LOG_IN, {**login, "o": next_step_code(staff.totp_secret)}))["logIn"]


async def test_staff_cannot_be_created_over_the_api(api: Api, staff: Caller) -> None:
    body = await api.gql(
        'mutation($c: ID!) { inviteUser(email: "x@example.com", role: STAFF, companyId: $c) { token } }',
        {"c": str((await Company.create(name="Q", kind=CompanyKind.CUSTOMER)).id)},
        token=staff.token,
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# --- companies and invitations -------------------------------------------------------------

INVITE = "mutation($e: String!, $r: Role!, $c: ID!) { inviteUser(email: $e, role: $r, companyId: $c) { token expiresAt } }"
ACCEPT = 'mutation($t: String!, $p: String!) { acceptInvitation(token: $t, password: $p, firstName: "Ina", lastName: "Vited") { token user { id role company { id } } } }'
CREATE_COMPANY = (
    "mutation($n: String!, $k: CompanyKind!) { createCompany(name: $n, kind: $k) { id kind } }"
)


async def test_staff_invites_a_provider_who_accepts(api: Api, staff: Caller) -> None:
    company = (await api.ok(CREATE_COMPANY, {"n": "Druck AG", "k": "PRINT_SERVICE"}, staff.token))[
        "createCompany"
    ]
    address = email("provider")
    invitation = (
        await api.ok(INVITE, {"e": address, "r": "PROVIDER", "c": company["id"]}, staff.token)
    )["inviteUser"]
    accepted = (await api.ok(ACCEPT, {"t": invitation["token"], "p": PASSWORD}))["acceptInvitation"]
    assert accepted["user"]["role"] == "PROVIDER"
    assert accepted["user"]["company"]["id"] == company["id"]
    # The token is single use.
    body = await api.gql(ACCEPT, {"t": invitation["token"], "p": PASSWORD})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    stored = await invitations_for_email(address).get()
    assert invitation["token"] not in stored.token_hash


async def test_company_admin_invites_customers_only(api: Api, customer: Caller) -> None:
    company_id = str(customer.user.company_id)
    ok = await api.ok(
        INVITE, {"e": email("colleague"), "r": "CUSTOMER", "c": company_id}, customer.token
    )
    assert ok["inviteUser"]["token"]
    for role in ("PROVIDER", "STAFF"):
        code = await api.error_code(
            INVITE, {"e": email("x"), "r": role, "c": company_id}, customer.token
        )
        assert code == "FORBIDDEN"


async def test_inviting_into_another_company_is_not_found(api: Api, customer: Caller) -> None:
    other = await api.customer()
    code = await api.error_code(
        INVITE, {"e": email("x"), "r": "CUSTOMER", "c": str(other.user.company_id)}, customer.token
    )
    assert code == "NOT_FOUND"
    assert (
        await api.error_code(
            INVITE, {"e": email("x"), "r": "CUSTOMER", "c": "not-a-uuid"}, customer.token
        )
        == "NOT_FOUND"
    )


async def test_non_admin_customer_cannot_invite(api: Api, customer: Caller) -> None:
    company = await Company.get(id=customer.user.company_id)
    member = await api.customer(company, admin=False)
    code = await api.error_code(
        INVITE, {"e": email("x"), "r": "CUSTOMER", "c": str(company.id)}, member.token
    )
    assert code == "FORBIDDEN"


async def test_expired_invitation_is_refused(api: Api, customer: Caller) -> None:
    token = (
        await api.ok(
            INVITE,
            {"e": email("late"), "r": "CUSTOMER", "c": str(customer.user.company_id)},
            customer.token,
        )
    )["inviteUser"]["token"]
    await Invitation.all().update(expires_at=now() - timedelta(seconds=1))
    before = await User.all().count()
    assert await api.error_code(ACCEPT, {"t": token, "p": PASSWORD}) == "BAD_USER_INPUT"
    assert await User.all().count() == before


async def test_invitation_refuses_weak_password_and_stays_usable(
    api: Api, customer: Caller
) -> None:
    token = (
        await api.ok(
            INVITE,
            {"e": email("weak"), "r": "CUSTOMER", "c": str(customer.user.company_id)},
            customer.token,
        )
    )["inviteUser"]["token"]
    assert await api.error_code(ACCEPT, {"t": token, "p": "password"}) == "BAD_USER_INPUT"
    assert (await api.ok(ACCEPT, {"t": token, "p": PASSWORD}))["acceptInvitation"]["token"]


async def test_provider_cannot_join_a_customer_company(api: Api, staff: Caller) -> None:
    company = await Company.create(name="C", kind=CompanyKind.CUSTOMER)
    code = await api.error_code(
        INVITE, {"e": email("p"), "r": "PROVIDER", "c": str(company.id)}, staff.token
    )
    assert code == "BAD_USER_INPUT"


async def test_create_company_validates(api: Api, staff: Caller) -> None:
    before = await Company.all().count()
    assert (
        await api.error_code(CREATE_COMPANY, {"n": "", "k": "CUSTOMER"}, staff.token)
        == "BAD_USER_INPUT"
    )
    assert (
        await api.error_code(CREATE_COMPANY, {"n": "x", "k": "NOPE"}, staff.token)
        == "BAD_USER_INPUT"
    )
    assert (
        await api.error_code(CREATE_COMPANY, {"n": "y" * 201, "k": "CUSTOMER"}, staff.token)
        == "BAD_USER_INPUT"
    )
    assert await Company.all().count() == before


# --- API tokens ------------------------------------------------------------------------------


async def test_api_token_acts_as_its_user_until_revoked(api: Api, customer: Caller) -> None:
    token = (await api.ok('mutation { createApiToken(name: "slicer") }', token=customer.token))[
        "createApiToken"
    ]
    assert token.startswith("pvt_")
    stored = await ApiToken.get(user_id=customer.user.id)
    assert token not in stored.token_hash
    me = await api.ok("{ me { id } }", token=token)
    assert me["me"]["id"] == str(customer.user.id)
    await api.ok('mutation { revokeApiToken(name: "slicer") }', token=customer.token)
    assert await api.error_code("{ me { id } }", token=token) == "UNAUTHENTICATED"
    code = await api.error_code('mutation { revokeApiToken(name: "slicer") }', token=customer.token)
    assert code == "NOT_FOUND"


async def test_api_token_cannot_log_out(api: Api, customer: Caller) -> None:
    token = (await api.ok('mutation { createApiToken(name: "ci") }', token=customer.token))[
        "createApiToken"
    ]
    assert await api.error_code("mutation { logOut }", token=token) == "BAD_USER_INPUT"
