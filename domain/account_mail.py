"""Account e-mails: password reset, address verification, invitations, "account exists".

A request only enqueues a job (runtime/jobs.py, with retries); the job looks the person
up, makes the one-time token and sends. So `requestPasswordReset` does the same work and
answers the same for a known and an unknown address, and no request waits for SMTP.
Job payloads are sealed (they may carry an invitation token and sit in Redis).
Tokens: random, only their keyed digest stored, single use (`used_at`), short-lived.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from tortoise.timezone import now

from domain import audit
from domain.auth import IssuedSession, start_session
from domain.credentials import check_otp, set_password
from domain.errors import BadUserInput
from domain.secrets_box import new_token, seal, token_digest, unseal
from domain.validation import clean_email
from runtime.settings import Settings
from storage.models import AccountToken, Invitation, User
from storage.queries import find_user_by_email

if TYPE_CHECKING:
    from runtime.mailer import Mailer
    from runtime.rate_limits import RateLimiter

log = logging.getLogger("printvault.account_mail")

RESET_MINUTES = 30
VERIFY_HOURS = 72
RESET_PREFIX = "pvr"
VERIFY_PREFIX = "pve"
_SEAL_PURPOSE = b"account-mail-job"


class Outbox(Protocol):
    """What the rules need of the job engine: a sealed payload, delivered with retries."""

    async def enqueue_mail(self, sealed: str) -> None: ...


async def enqueue(settings: Settings, outbox: Outbox, kind: str, **fields: Any) -> None:
    payload = json.dumps({"kind": kind, **fields}, default=str)
    await outbox.enqueue_mail(seal(settings.secret_key, _SEAL_PURPOSE, payload))


# --- requests --------------------------------------------------------------------------------


async def request_password_reset(
    settings: Settings, limiter: RateLimiter, outbox: Outbox, email: str, ip: str | None
) -> None:
    """Always the same answer; a known address gets a link, an unknown one nothing."""
    await limiter.hit("password_reset_ip", ip)
    address = clean_email(email)
    await limiter.hit("password_reset_account", address)
    await enqueue(settings, outbox, "password_reset", email=address)
    await audit.record("password.reset_requested", ip=ip)


async def reset_password(
    settings: Settings,
    limiter: RateLimiter,
    token: str,
    new_password: str,
    otp: str | None,
    ip: str | None,
    user_agent: str | None = None,
) -> IssuedSession:
    await limiter.hit("password_reset_ip", ip)
    row = await _valid_token(settings, "reset", token)
    user = await User.get(id=row.user_id)
    # The mailbox is one factor; an enrolled TOTP is still the second.
    await check_otp(settings, limiter, user, otp, "reset the password")
    if not await _claim(row):
        raise _invalid()
    await set_password(user, new_password, keep_session=None)
    if user.email_verified_at is None:  # the link proved the mailbox too
        await User.filter(id=user.id).update(email_verified_at=now())
    await audit.record("password.reset", actor_id=user.id, ip=ip)
    return await start_session(settings, await User.get(id=user.id), ip, user_agent)


async def verify_email(
    settings: Settings, limiter: RateLimiter, token: str, ip: str | None
) -> None:
    await limiter.hit("password_reset_ip", ip)
    row = await _valid_token(settings, "verify", token)
    if not await _claim(row):
        raise _invalid()
    await User.filter(id=row.user_id, email_verified_at=None).update(email_verified_at=now())
    await audit.record("email.verified", actor_id=row.user_id, ip=ip)


async def _valid_token(settings: Settings, purpose: str, token: str) -> AccountToken:
    digest = token_digest(settings.secret_key, token if isinstance(token, str) else "")
    row = await AccountToken.get_or_none(token_hash=digest, purpose=purpose).select_related(
        "user"
    )
    if row is None or row.used_at or row.expires_at <= now() or row.user.deleted_at:
        raise _invalid()
    return row


async def _claim(row: AccountToken) -> bool:
    # Conditional update: of two concurrent uses, one wins.
    return await AccountToken.filter(id=row.id, used_at=None).update(used_at=now()) == 1


def _invalid() -> BadUserInput:
    return BadUserInput("The link is not valid: unknown, used or expired.", field="token")


# --- the job ---------------------------------------------------------------------------------


class Delivery:
    """One sealed job: what to send to whom, decided when the job runs.

    `prepare()` runs once (it may create a token); `send()` may be retried."""

    def __init__(self, settings: Settings, sealed: str) -> None:
        self.settings = settings
        opened = unseal(settings.secret_key, _SEAL_PURPOSE, sealed)
        self.payload: dict[str, Any] = json.loads(opened)
        self.kind: str = self.payload["kind"]
        self.to: str | None = None
        self.context: dict[str, object] = {}

    async def prepare(self) -> bool:
        """False when there is nothing to send (unknown address, invitation gone)."""
        return await getattr(self, f"_prepare_{self.kind}")()

    async def still_wanted(self) -> bool:
        """Checked before every try: an invitation revoked or erased meanwhile is not sent."""
        if self.kind != "invitation":
            return True
        return await Invitation.exists(
            id=self.payload["invitation_id"], accepted_at=None, expires_at__gt=now()
        )

    async def send(self, mailer: Mailer) -> None:
        assert self.to is not None
        await mailer.send(self.to, self.kind, **self.context)

    async def _prepare_password_reset(self) -> bool:
        user = await find_user_by_email(self.payload["email"])
        if user is None:
            return False
        token = await _new_account_token(self.settings, user, "reset", RESET_MINUTES * 60)
        self.to, self.context = user.email, {"token": token, "minutes": RESET_MINUTES}
        return True

    async def _prepare_verify_email(self) -> bool:
        user = await User.get_or_none(id=self.payload["user_id"], deleted_at=None)
        if user is None or user.email_verified_at is not None:
            return False
        token = await _new_account_token(self.settings, user, "verify", VERIFY_HOURS * 3600)
        self.to, self.context = user.email, {"token": token}
        return True

    async def _prepare_account_exists(self) -> bool:
        user = await find_user_by_email(self.payload["email"])
        if user is None:
            return False
        self.to, self.context = user.email, {}
        return True

    async def _prepare_invitation(self) -> bool:
        invitation = await Invitation.get_or_none(id=self.payload["invitation_id"]).select_related(
            "company"
        )
        if invitation is None:
            return False
        self.to = invitation.email
        self.context = {"token": self.payload["token"], "company": invitation.company.name}
        return await self.still_wanted()


async def _new_account_token(settings: Settings, user: User, purpose: str, seconds: int) -> str:
    prefix = RESET_PREFIX if purpose == "reset" else VERIFY_PREFIX
    token = new_token(prefix)
    await AccountToken.create(
        purpose=purpose,
        token_hash=token_digest(settings.secret_key, token),
        user_id=user.id,
        expires_at=now() + timedelta(seconds=seconds),
    )
    return token
