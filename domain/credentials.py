"""Credential changes and the account's own view of its sessions and API tokens.

A stolen bearer token must not turn into lasting access (issue 10, finding 1): a
credential change (TOTP enrollment, password, API tokens, recovery codes, erasure) is
never done with an API token, and with a session only given the password in the same
call or within REAUTH_WINDOW of the log-in that created the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tortoise.timezone import now
from tortoise.transactions import in_transaction

from domain import audit, passwords, totp
from domain.errors import BadUserInput, Forbidden, MfaRequired, NotFound, ReauthRequired
from domain.ids import parse_row_id
from domain.policy import Viewer
from runtime.settings import Settings
from storage.models import AccountToken, ApiToken, Session, User

if TYPE_CHECKING:  # the limiter is infrastructure; the rules only call it
    from runtime.rate_limits import RateLimiter

REAUTH_WINDOW = timedelta(minutes=10)


async def require_fresh_proof(
    limiter: RateLimiter, viewer: Viewer, user: User, password: str | None
) -> None:
    """FORBIDDEN for an API token; REAUTH_REQUIRED without a fresh password proof."""
    if viewer.api_token_id is not None or viewer.session_id is None:
        raise Forbidden("Credentials are changed from a logged-in session, never by API token.")
    if password is not None:
        await check_password(limiter, user, password)
        return
    session = await Session.get_or_none(id=viewer.session_id)
    if session is None or now() - session.created_at >= REAUTH_WINDOW:
        raise ReauthRequired()


async def check_password(limiter: RateLimiter, user: User, password: str) -> None:
    # Its own budget, per account: a stolen session cannot brute-force the password here.
    await limiter.hit("reauth_account", user.id)
    if not isinstance(password, str) or not await passwords.verify_password(
        user.password_hash, password
    ):
        raise BadUserInput("The password is wrong.", field="password")


async def check_otp(
    settings: Settings, limiter: RateLimiter, user: User, otp: str | None, purpose: str
) -> None:
    """When TOTP is enrolled, a current code (or a recovery code) is needed too."""
    if not user.mfa_enabled:
        return
    await limiter.hit("otp_account", user.id)
    if not otp or not user.totp_secret_sealed:
        raise MfaRequired(f"A valid one-time code is required to {purpose}.")
    if totp.looks_like_recovery_code(otp):
        accepted = await totp.consume_recovery_code(settings.secret_key, user, otp)
    else:
        secret = totp.unseal_secret(settings.secret_key, user.totp_secret_sealed)
        accepted = await totp.consume_code(user, secret, otp)
    if not accepted:
        raise MfaRequired("The one-time code is wrong, expired or already used.")


async def set_password(user: User, new_password: str, keep_session: int | None) -> None:
    """Store the new hash; end every other session and every pending reset link."""
    passwords.check_policy(new_password, [user.email, user.first_name, user.last_name])
    password_hash = await passwords.hash_password(new_password)
    async with in_transaction():
        await User.filter(id=user.id).update(password_hash=password_hash)
        others = Session.filter(user_id=user.id, revoked_at=None)
        if keep_session is not None:
            others = others.exclude(id=keep_session)
        await others.update(revoked_at=now())
        await AccountToken.filter(user_id=user.id, purpose="reset", used_at=None).update(
            used_at=now()
        )


async def change_password(
    settings: Settings,
    limiter: RateLimiter,
    viewer: Viewer,
    current_password: str,
    new_password: str,
    otp: str | None,
    ip: str | None,
) -> None:
    user = await User.get(id=viewer.user_id)
    await require_fresh_proof(limiter, viewer, user, current_password)
    await check_otp(settings, limiter, user, otp, "change the password")
    await set_password(user, new_password, keep_session=viewer.session_id)
    await audit.record("password.changed", actor_id=user.id, ip=ip)


async def regenerate_recovery_codes(
    settings: Settings,
    limiter: RateLimiter,
    viewer: Viewer,
    password: str,
    otp: str,
    ip: str | None,
) -> list[str]:
    user = await User.get(id=viewer.user_id)
    await require_fresh_proof(limiter, viewer, user, password)
    if not user.mfa_enabled:
        raise BadUserInput("Two-factor authentication is not enabled.")
    await check_otp(settings, limiter, user, otp, "regenerate recovery codes")
    codes = totp.new_recovery_codes()
    await totp.store_recovery_codes(settings.secret_key, user, codes)
    await audit.record("mfa.recovery_codes_regenerated", actor_id=user.id, ip=ip)
    return codes


@dataclass(frozen=True)
class SessionInfo:
    id: int
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


async def live_sessions(settings: Settings, viewer: Viewer, user_id: object) -> list[SessionInfo]:
    """The sessions that still work, newest first; `current` marks the caller's."""
    current = now()
    idle_since = current - timedelta(seconds=settings.session_idle_seconds)
    rows = await Session.filter(
        user_id=user_id, revoked_at=None, expires_at__gt=current, last_seen_at__gt=idle_since
    ).order_by("-created_at")
    return [
        SessionInfo(
            row.id, row.created_at, row.last_seen_at, row.ip, row.user_agent,
            row.id == viewer.session_id,
        )
        for row in rows
    ]


async def live_api_tokens(user_id: object) -> list[ApiToken]:
    return await ApiToken.filter(user_id=user_id, revoked_at=None).order_by("created_at")


async def revoke_session(viewer: Viewer, session_id: object, ip: str | None) -> None:
    number = parse_row_id(session_id, "Session")
    revoked = await Session.filter(id=number, user_id=viewer.user_id, revoked_at=None).update(
        revoked_at=now()
    )
    if not revoked:
        raise NotFound("Session not found.")
    await audit.record("session.revoked", actor_id=viewer.user_id, ip=ip)
