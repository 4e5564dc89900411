"""Authentication: log-in, sessions, API tokens, and who the caller is.

Session tokens and API tokens are opaque random strings; only their keyed
digests are stored. A session ends at its absolute expiry, after an idle
period, or at log-out, which revokes it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tortoise.timezone import now

from domain import audit, passwords, totp
from domain.enums import Role
from domain.errors import BadUserInput, MfaRequired, NotFound, Unauthenticated
from domain.policy import Viewer
from domain.secrets_box import new_token, token_digest
from domain.validation import clean_name
from runtime import metrics
from runtime.settings import Settings
from storage.models import ApiToken, Session, User
from storage.queries import api_token_by_digest, find_user_by_email, session_by_digest

if TYPE_CHECKING:  # the limiter is infrastructure; the rules only call hit()
    from runtime.rate_limits import RateLimiter

SESSION_PREFIX = "pvs"
API_TOKEN_PREFIX = "pvt"  # noqa: S105 (a prefix, not a secret)
# Writing last_seen_at on every request would turn reads into writes; a minute is precise enough.
_TOUCH_INTERVAL = timedelta(seconds=60)
# Known addresses are looked for among this many of the newest sessions (sealed IPs).
KNOWN_ADDRESS_SESSIONS = 200


@dataclass(frozen=True)
class IssuedSession:
    token: str
    expires_at: datetime
    user: User
    session_id: int

    @property
    def viewer(self) -> Viewer:
        return viewer_for(self.user, session_id=self.session_id)


def viewer_for(user: User, *, session_id: int | None = None, api_token_id=None) -> Viewer:
    return Viewer(
        user_id=user.id,
        role=str(user.role),
        company_id=user.company_id,
        is_company_admin=user.is_company_admin,
        session_id=session_id,
        api_token_id=api_token_id,
    )


async def start_session(
    settings: Settings, user: User, ip: str | None, user_agent: str | None = None
) -> IssuedSession:
    token = new_token(SESSION_PREFIX)
    current = now()
    expires_at = current + timedelta(seconds=settings.session_absolute_seconds)
    session = await Session.create(
        token_hash=token_digest(settings.secret_key, token),
        user_id=user.id,
        last_seen_at=current,
        expires_at=expires_at,
        ip=ip,
        user_agent=_agent(user_agent),
    )
    return IssuedSession(token=token, expires_at=expires_at, user=user, session_id=session.id)


async def log_in(
    settings: Settings,
    limiter: RateLimiter,
    email: str,
    password: str,
    otp: str | None,
    ip: str | None,
    user_agent: str | None = None,
) -> IssuedSession:
    """Check password, then the second factor; the same error for every wrong credential."""
    await limiter.hit("login_ip", ip)
    account = _email_key(email)
    # Only failures count (runtime/rate_limits.py): per (account, address), then per account.
    pair = f"{account}|{ip}"
    await limiter.refuse_if_exhausted("login_account_ip", pair)
    user = await find_user_by_email(account)
    if not (user is not None and ip is not None and await _known_address(settings, user, ip)):
        await limiter.refuse_if_exhausted("login_account", account)
    if not await passwords.verify_password(user.password_hash if user else None, password):
        await limiter.count("login_account_ip", pair)
        await limiter.count("login_account", account)
        await audit.record("login.failed", actor_id=user.id if user else None, ip=ip)
        metrics.LOGIN_FAILURES.labels("password").inc()
        raise Unauthenticated("Wrong email or password.")
    assert user is not None
    if otp:
        await limiter.hit("otp_account", user.id)
    await _check_second_factor(settings, user, otp, ip)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash_password(password)
        await user.save(update_fields=["password_hash"])
    await audit.record("login", actor_id=user.id, company_id=user.company_id, ip=ip)
    return await start_session(settings, user, ip, user_agent)


async def _known_address(settings: Settings, user: User, ip: str) -> bool:
    """The account logged in from this address recently: its owner, most likely."""
    since = now() - timedelta(days=settings.known_ip_days)
    # Session IPs are sealed (storage/sealed_fields.py): compared once opened, newest first.
    recent = (
        await Session.filter(user_id=user.id, created_at__gte=since)
        .order_by("-created_at")
        .limit(KNOWN_ADDRESS_SESSIONS)
    )
    return any(session.ip == ip for session in recent)


def _agent(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    printable = "".join(char for char in user_agent if char.isprintable())
    return printable[:200] or None


async def _check_second_factor(
    settings: Settings, user: User, otp: str | None, ip: str | None
) -> None:
    # Staff can never log in without a code, even if enrollment were somehow missing.
    if not user.mfa_enabled and user.role != Role.STAFF:
        return
    if not otp or not user.totp_secret_sealed:
        metrics.LOGIN_FAILURES.labels("otp_missing").inc()
        raise MfaRequired()
    if totp.looks_like_recovery_code(otp):
        accepted = await totp.consume_recovery_code(settings.secret_key, user, otp)
    else:
        secret = totp.unseal_secret(settings.secret_key, user.totp_secret_sealed)
        accepted = await totp.consume_code(user, secret, otp)
    if not accepted:
        await audit.record("login.otp_failed", actor_id=user.id, ip=ip)
        metrics.LOGIN_FAILURES.labels("otp").inc()
        raise MfaRequired("The one-time code is wrong, expired or already used.")


async def log_out(viewer: Viewer) -> None:
    if viewer.session_id is None:
        raise BadUserInput("Only a session can log out; revoke API tokens instead.")
    await Session.filter(id=viewer.session_id, revoked_at=None).update(revoked_at=now())


async def authenticate(settings: Settings, token: str) -> tuple[Viewer, User]:
    """The caller behind a bearer token, or Unauthenticated."""
    digest = token_digest(settings.secret_key, token)
    if token.startswith(API_TOKEN_PREFIX + "_"):
        return await _authenticate_api_token(digest)
    if token.startswith(SESSION_PREFIX + "_"):
        return await _authenticate_session(settings, digest)
    raise Unauthenticated("The token is not valid.")


def _session_alive(settings: Settings, session: Session | None, current: datetime) -> bool:
    return not (
        session is None
        or session.revoked_at is not None
        or session.expires_at <= current
        or session.last_seen_at + timedelta(seconds=settings.session_idle_seconds) <= current
        or session.user.deleted_at is not None
    )


async def _authenticate_session(settings: Settings, digest: str) -> tuple[Viewer, User]:
    session = await session_by_digest.first(digest)
    current = now()
    if session is None or not _session_alive(settings, session, current):
        raise Unauthenticated("The session has expired; log in again.")
    if current - session.last_seen_at > _TOUCH_INTERVAL:
        await Session.filter(id=session.id).update(last_seen_at=current)
    return viewer_for(session.user, session_id=session.id), session.user


async def _authenticate_api_token(digest: str) -> tuple[Viewer, User]:
    token = await api_token_by_digest.first(digest)
    if token is None or token.revoked_at is not None or token.user.deleted_at is not None:
        raise Unauthenticated("The API token is not valid or was revoked.")
    current = now()
    if token.last_used_at is None or current - token.last_used_at > _TOUCH_INTERVAL:
        await ApiToken.filter(id=token.id).update(last_used_at=current)
    return viewer_for(token.user, api_token_id=token.id), token.user


async def user_viewer(user_id: str) -> tuple[Viewer, User]:
    """The viewer of a user named by a signed link (no session involved)."""
    user = await User.get_or_none(id=user_id, deleted_at=None)
    if user is None:
        raise NotFound("This download link is not valid or has expired.")
    return viewer_for(user), user


async def link_viewer(
    settings: Settings, user_id: str, session_id: int | None, api_token_id: str | None
) -> tuple[Viewer, User]:
    """The viewer of a download link, only while the session or API token that
    requested it still works (log-out, revocation and erasure end the link)."""
    gone = NotFound("This download link is not valid or has expired.")
    if session_id is not None:
        session = await Session.get_or_none(id=session_id, user_id=user_id).select_related("user")
        if session is None or not _session_alive(settings, session, now()):
            raise gone
        return viewer_for(session.user, session_id=session.id), session.user
    token = await ApiToken.get_or_none(
        id=api_token_id, user_id=user_id, revoked_at=None
    ).select_related("user")
    if token is None or token.user.deleted_at is not None:
        raise gone
    return viewer_for(token.user, api_token_id=token.id), token.user


async def create_api_token(
    settings: Settings, viewer: Viewer, name: str, ip: str | None
) -> tuple[ApiToken, str]:
    """Call it after credentials.require_fresh_proof: never from an API token."""
    label = clean_name(name, "name", 100)
    token = new_token(API_TOKEN_PREFIX)
    row = await ApiToken.create(
        name=label, token_hash=token_digest(settings.secret_key, token), user_id=viewer.user_id
    )
    await audit.record("api_token.created", actor_id=viewer.user_id, ip=ip, token_name=label)
    return row, token


async def revoke_api_token(viewer: Viewer, name: str, ip: str | None) -> None:
    """Revoke the caller's active tokens of that name (the token itself is shown only once)."""
    label = clean_name(name, "name", 100)
    revoked = await ApiToken.filter(user_id=viewer.user_id, name=label, revoked_at=None).update(
        revoked_at=now()
    )
    if not revoked:
        raise NotFound("No active API token with this name.")
    await audit.record("api_token.revoked", actor_id=viewer.user_id, ip=ip, token_name=label)


def _email_key(email: str) -> str:
    return email.strip().casefold() if isinstance(email, str) else ""
