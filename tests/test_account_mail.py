"""Issue 10, finding 4: password reset, e-mail verification, invitation and account-exists
mails, sent by the job engine (with retries) to a real SMTP server (aiosmtpd) the test
starts on a loopback port the OS picks.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta

import httpx
from tortoise.timezone import now

from runtime.jobs import JobOptions
from storage.models import AccountToken, User
from storage.queries import invitations_for_email
from tests.conftest import serving
from tests.helpers import ADDRESS, PASSWORD, Api, current_code, email
from tests.server_process import start_server
from tests.test_mailer import Inbox, smtp_server

PUBLIC = "https://pv.test"
NEW_PASSWORD = "a brand new passphrase 31"
REQUEST = "mutation($e: String!) { requestPasswordReset(email: $e) }"
RESET = """mutation($t: String!, $n: String!, $o: String) {
  resetPassword(token: $t, newPassword: $n, otp: $o) { token user { id } } }"""
LOG_IN = "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }"
SIGN_UP = "mutation($i: SignUpInput!) { signUp(input: $i) { token } }"
INVITE = """mutation($e: String!, $c: ID!) {
  inviteUser(email: $e, role: CUSTOMER, companyId: $c) { token expiresAt } }"""
FAST_RETRIES = JobOptions(mail_retry_delays_s=(0.3, 0.3, 0.3))


class FlakyInbox(Inbox):
    """Answers 451 (try later) to the first `failures` recipients, then takes mail."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.tries = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.tries += 1
        if self.tries <= self.failures:
            return "451 4.3.0 try again later"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@asynccontextmanager
async def mail_api(
    settings, tmp_path, inbox: Inbox, options: JobOptions = FAST_RETRIES, **changes
) -> AsyncIterator[Api]:
    async with smtp_server(inbox) as port:
        configured = replace(
            settings,
            smtp_url=f"smtp://127.0.0.1:{port}",
            public_url=PUBLIC,
            storage_url=f"file://{tmp_path}",
            **changes,
        )
        async with serving(configured, options) as api:
            yield api


async def _mails(inbox: Inbox, count: int, seconds: float = 15) -> list:
    for _ in range(int(seconds / 0.05)):  # bounded
        if len(inbox.messages) >= count:
            break
        await asyncio.sleep(0.05)
    return inbox.messages


def _token(message, path: str) -> str:
    body = message.get_content()
    found = re.search(re.escape(f"{PUBLIC}{path}#token=") + r"([A-Za-z0-9_\-]+)", body)
    assert found, body
    return found.group(1)


async def test_reset_answers_the_same_for_known_and_unknown_and_mails_only_the_known(
    database, settings, tmp_path
) -> None:
    inbox = Inbox()
    async with mail_api(settings, tmp_path, inbox) as api:
        owner = await api.customer()
        enqueued: list[str] = []
        original = api.services.jobs.enqueue_mail

        async def spy(sealed: str) -> None:
            enqueued.append(sealed)
            await original(sealed)

        api.services.jobs.enqueue_mail = spy
        timings = {}
        for label, address in (("unknown", email("nobody")), ("known", owner.user.email)):
            started = time.perf_counter()
            body = await api.gql(REQUEST, {"e": address})
            timings[label] = time.perf_counter() - started
            assert body == {"data": {"requestPasswordReset": True}}
        # The same work either way: one job each, decided when it runs.
        assert len(enqueued) == 2 and all(owner.user.email not in s for s in enqueued)
        print(f"requestPasswordReset: known {timings['known'] * 1000:.1f} ms, "
              f"unknown {timings['unknown'] * 1000:.1f} ms")
        [(_, recipients, message, _)] = await _mails(inbox, 1)
        await asyncio.sleep(0.3)
        assert len(inbox.messages) == 1 and recipients == [owner.user.email]
        assert message["Subject"] == "Reset your PrintVault password"
        assert "30 minutes" in message.get_content()


async def test_reset_link_works_once_within_30_minutes_and_ends_every_session(
    database, settings, tmp_path
) -> None:
    inbox = Inbox()
    async with mail_api(settings, tmp_path, inbox) as api:
        owner = await api.customer()
        await api.ok(REQUEST, {"e": owner.user.email})
        [(_, _, message, _)] = await _mails(inbox, 1)
        token = _token(message, "/reset-password")
        stored = await AccountToken.get(user_id=owner.user.id)
        assert stored.token_hash != token and token not in stored.token_hash  # a keyed digest
        minutes = (stored.expires_at - stored.created_at).total_seconds() / 60
        assert 29.9 < minutes <= 30.1
        payload = (await api.ok(RESET, {"t": token, "n": NEW_PASSWORD}))["resetPassword"]
        assert payload["token"] and payload["user"]["id"] == str(owner.user.id)
        assert await api.error_code("{ me { id } }", token=owner.token) == "UNAUTHENTICATED"
        assert await api.error_code(RESET, {"t": token, "n": PASSWORD}) == "BAD_USER_INPUT"
        assert (await api.ok(LOG_IN, {"e": owner.user.email, "p": NEW_PASSWORD}))["logIn"]
        # An expired link is refused.
        await api.ok(REQUEST, {"e": owner.user.email})
        [_, (_, _, second, _)] = await _mails(inbox, 2)
        await AccountToken.filter(used_at=None).update(expires_at=now() - timedelta(seconds=1))
        assert await api.error_code(RESET, {"t": _token(second, "/reset-password"), "n": PASSWORD}) == (
            "BAD_USER_INPUT"
        )


async def test_reset_still_needs_the_totp_when_enrolled(database, settings, tmp_path) -> None:
    inbox = Inbox()
    async with mail_api(settings, tmp_path, inbox) as api:
        staff = await api.staff()
        assert staff.totp_secret
        await api.ok(REQUEST, {"e": staff.user.email})
        [(_, _, message, _)] = await _mails(inbox, 1)
        token = _token(message, "/reset-password")
        assert await api.error_code(RESET, {"t": token, "n": NEW_PASSWORD}) == "MFA_REQUIRED"
        otp = current_code(staff.totp_secret)
        assert (await api.ok(RESET, {"t": token, "n": NEW_PASSWORD, "o": otp}))["resetPassword"]


async def test_sign_up_mails_a_verification_link(database, settings, tmp_path) -> None:
    inbox = Inbox()
    async with mail_api(settings, tmp_path, inbox) as api:
        address = email("new")
        data = {"email": address, "password": PASSWORD, "firstName": "N", "lastName": "U",
                "companyName": "C", "address": ADDRESS}
        session = (await api.ok(SIGN_UP, {"i": data}))["signUp"]["token"]
        assert (await api.ok("{ me { emailVerified } }", token=session))["me"]["emailVerified"] is False
        [(_, recipients, message, _)] = await _mails(inbox, 1)
        assert recipients == [address]
        token = _token(message, "/verify-email")
        verify = "mutation($t: String!) { verifyEmail(token: $t) }"
        assert (await api.ok(verify, {"t": token}))["verifyEmail"] is True
        assert (await api.ok("{ me { emailVerified } }", token=session))["me"]["emailVerified"] is True
        assert await api.error_code(verify, {"t": token}) == "BAD_USER_INPUT"  # single use


async def test_a_taken_address_is_refused_its_owner_told_and_tries_limited(
    database, settings, tmp_path
) -> None:
    inbox = Inbox()
    async with mail_api(settings, tmp_path, inbox, rate_limits="signup_email=2/hour") as api:
        owner = await api.customer()
        data = {"email": owner.user.email, "password": PASSWORD, "firstName": "X",
                "lastName": "Y", "companyName": "Z", "address": ADDRESS}
        assert await api.error_code(SIGN_UP, {"i": data}) == "BAD_USER_INPUT"
        [(_, recipients, message, _)] = await _mails(inbox, 1)
        assert recipients == [owner.user.email]
        assert message["Subject"] == "Your PrintVault account"
        assert await api.error_code(SIGN_UP, {"i": data}) == "BAD_USER_INPUT"
        assert await api.error_code(SIGN_UP, {"i": data}) == "RATE_LIMITED"


async def test_invitations_are_mailed_and_reveal_no_account_elsewhere(
    database, settings, tmp_path
) -> None:
    inbox = Inbox()
    async with mail_api(settings, tmp_path, inbox) as api:
        admin = await api.customer()
        elsewhere = await api.customer()  # has an account in another company
        company = str(admin.user.company_id)
        fresh = (await api.gql(INVITE, {"e": email("fresh"), "c": company}, admin.token))
        taken = (await api.gql(INVITE, {"e": elsewhere.user.email, "c": company}, admin.token))
        assert not fresh.get("errors") and not taken.get("errors"), taken
        assert set(fresh["data"]["inviteUser"]) == set(taken["data"]["inviteUser"])
        messages = await _mails(inbox, 2)
        assert {m[1][0] for m in messages} >= {elsewhere.user.email}
        invitation_mail = next(m for m in messages if m[1] == [elsewhere.user.email])[2]
        assert "Acme GmbH" in invitation_mail.get_content()
        assert _token(invitation_mail, "/accept-invitation") == taken["data"]["inviteUser"]["token"]


async def test_a_mail_the_server_defers_is_retried_by_the_job_engine(
    database, settings, tmp_path
) -> None:
    inbox = FlakyInbox(failures=2)
    async with mail_api(settings, tmp_path, inbox) as api:
        owner = await api.customer()
        await api.ok(REQUEST, {"e": owner.user.email})
        [(_, recipients, _, _)] = await _mails(inbox, 1)
        assert recipients == [owner.user.email] and inbox.tries == 3


async def test_invitations_of_an_erased_admin_are_revoked_and_not_mailed(
    database, settings, tmp_path
) -> None:
    inbox = FlakyInbox(failures=1)
    # The retry waits long enough for the erasure (an Argon2 check) to happen first.
    slow_retry = JobOptions(mail_retry_delays_s=(2.0,))
    async with mail_api(settings, tmp_path, inbox, slow_retry) as api:
        admin = await api.customer()
        invited = email("invitee")
        await api.ok(INVITE, {"e": invited, "c": str(admin.user.company_id)}, admin.token)
        for _ in range(500):  # until the first try was deferred (bounded)
            if inbox.tries >= 1:
                break
            await asyncio.sleep(0.02)
        await api.ok("mutation($p: String!) { deleteMyAccount(password: $p) }", {"p": PASSWORD},
                     admin.token)
        assert await invitations_for_email(invited).count() == 0
        await asyncio.sleep(2.5)  # past the retry
        assert inbox.messages == [] and inbox.tries == 1
        assert await User.filter(id=admin.user.id, deleted_at__isnull=False).exists()


async def test_mails_from_the_real_server_process(tmp_path) -> None:
    """The production path: `server.py serve` with SMTP_URL, its own job engine."""
    inbox = Inbox()
    async with smtp_server(inbox) as port:
        env = {**os.environ, "DATA_DIR": str(tmp_path), "HOST": "127.0.0.1",
               "SMTP_URL": f"smtp://127.0.0.1:{port}", "PUBLIC_URL": PUBLIC,
               "MAIL_FROM": "accounts@pv.test"}
        server, server_port = await asyncio.to_thread(start_server, env, tmp_path / "server.log")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server_port}",
                                         timeout=30) as client:

                async def call(query: str, variables: dict) -> dict:
                    response = await client.post("/graphql",
                                                 json={"query": query, "variables": variables})
                    return response.json()

                address = email("real")
                data = {"email": address, "password": PASSWORD, "firstName": "R",
                        "lastName": "S", "companyName": "C", "address": ADDRESS}
                assert (await call(SIGN_UP, {"i": data}))["data"]["signUp"]["token"]
                [(sender, _, verify_mail, _)] = await _mails(inbox, 1)
                assert sender == "accounts@pv.test"
                verify = "mutation($t: String!) { verifyEmail(token: $t) }"
                token = _token(verify_mail, "/verify-email")
                assert (await call(verify, {"t": token}))["data"]["verifyEmail"] is True
                assert (await call(REQUEST, {"e": address}))["data"]["requestPasswordReset"]
                [_, (_, _, reset_mail, _)] = await _mails(inbox, 2)
                reset = {"t": _token(reset_mail, "/reset-password"), "n": NEW_PASSWORD}
                assert (await call(RESET, reset))["data"]["resetPassword"]["token"]
                logged_in = await call(LOG_IN, {"e": address, "p": NEW_PASSWORD})
                assert logged_in["data"]["logIn"]["token"]
        finally:
            server.terminate()
            await asyncio.to_thread(server.wait, 30)
