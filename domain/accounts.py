"""Accounts and companies: sign-up, TOTP enrollment, invitations, staff creation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise.exceptions import IntegrityError
from tortoise.timezone import now
from tortoise.transactions import in_transaction

from domain import account_mail, audit, credentials, passwords, policy, totp
from domain.account_mail import Outbox
from domain.auth import IssuedSession, start_session
from domain.enums import CompanyKind, Role
from domain.errors import BadUserInput, Forbidden, NotFound
from domain.ids import parse_id
from domain.policy import Viewer
from domain.secrets_box import new_token, token_digest
from domain.validation import clean_address, clean_email, clean_name, clean_phone
from runtime.settings import Settings
from storage.models import Company, Invitation, User
from storage.queries import invitations_for_email

if TYPE_CHECKING:  # the limiter is infrastructure; the rules only call hit()
    from runtime.rate_limits import RateLimiter

INVITATION_PREFIX = "pvi"


@dataclass(frozen=True)
class SignUp:
    email: str
    password: str
    first_name: str
    last_name: str
    company_name: str
    address: dict[str, Any]
    phone: str | None = None


@dataclass(frozen=True)
class IssuedInvitation:
    token: str
    expires_at: datetime


async def sign_up(
    settings: Settings,
    limiter: RateLimiter,
    outbox: Outbox,
    data: SignUp,
    ip: str | None,
    user_agent: str | None = None,
) -> IssuedSession:
    """A new customer company with its first user as admin, in one transaction.

    A taken address is refused (the answer carries a session, so that cannot be
    hidden) but its owner is told by mail; tries per address are limited."""
    await limiter.hit("signup_ip", ip)
    email = clean_email(data.email)
    await limiter.hit("signup_email", email)
    first_name = clean_name(data.first_name, "firstName")
    last_name = clean_name(data.last_name, "lastName")
    company_name = clean_name(data.company_name, "companyName", 200)
    address = clean_address(data.address, "address", required=True)
    phone = clean_phone(data.phone)
    passwords.check_policy(data.password, [email, first_name, last_name, company_name])
    password_hash = await passwords.hash_password(data.password)
    try:
        async with in_transaction():
            company = await Company.create(
                name=company_name, kind=CompanyKind.CUSTOMER, address=address
            )
            user = await User.create(
                email=email,
                first_name=first_name,
                last_name=last_name,
                phone=phone,
                address=address,
                role=Role.CUSTOMER,
                company=company,
                is_company_admin=True,
                password_hash=password_hash,
                signup_ip=ip,
            )
            await audit.record("signup", actor_id=user.id, company_id=company.id, ip=ip)
    except IntegrityError:
        await account_mail.enqueue(settings, outbox, "account_exists", email=email)
        raise _email_taken() from None
    await account_mail.enqueue(settings, outbox, "verify_email", user_id=user.id)
    return await start_session(settings, user, ip, user_agent)


def _email_taken() -> BadUserInput:
    # Saying so reveals that the address has an account; sign-up cannot avoid that,
    # which is why sign-up is rate limited per IP.
    return BadUserInput("An account with this email already exists.", field="email")


async def begin_totp_enrollment(
    settings: Settings, limiter: RateLimiter, viewer: Viewer, password: str | None
) -> totp.TotpSetup:
    user = await User.get(id=viewer.user_id)
    # A stolen token enrolling its own TOTP would lock the owner out (issue 10).
    await credentials.require_fresh_proof(limiter, viewer, user, password)
    if user.mfa_enabled:
        raise BadUserInput("Two-factor authentication is already enabled.")
    secret = totp.new_secret()
    codes = totp.new_recovery_codes()
    user.totp_pending_sealed = totp.seal_secret(settings.secret_key, secret)
    async with in_transaction():
        await user.save(update_fields=["totp_pending_sealed"])
        await totp.store_recovery_codes(settings.secret_key, user, codes)
    return totp.TotpSetup(secret, totp.provisioning_uri(secret, user.email), codes)


async def confirm_totp_enrollment(
    settings: Settings, limiter: RateLimiter, viewer: Viewer, code: str, ip: str | None
) -> None:
    if viewer.api_token_id is not None:  # enrollment is a credential change (issue 10)
        raise Forbidden("Credentials are changed from a logged-in session, never by API token.")
    await limiter.hit("otp_account", viewer.user_id)
    user = await User.get(id=viewer.user_id)
    if user.mfa_enabled:
        raise BadUserInput("Two-factor authentication is already enabled.")
    if not user.totp_pending_sealed:
        raise BadUserInput("Start the enrollment first (beginTotpEnrollment).")
    secret = totp.unseal_secret(settings.secret_key, user.totp_pending_sealed)
    if not isinstance(code, str) or not await totp.consume_code(user, secret, code):
        raise BadUserInput("The code is wrong or already used.", field="code")
    await User.filter(id=user.id).update(
        mfa_enabled=True, totp_secret_sealed=user.totp_pending_sealed, totp_pending_sealed=None
    )
    await audit.record("mfa.enabled", actor_id=user.id, ip=ip)


async def create_company(
    viewer: Viewer, name: str, kind: str, address: dict | None, ip: str | None
) -> Company:
    company = await Company.create(
        name=clean_name(name, "name", 200),
        kind=CompanyKind(kind),
        address=clean_address(address, "address", required=False),
    )
    await audit.record("company.created", actor_id=viewer.user_id, company_id=company.id, ip=ip)
    return company


async def invite_user(
    settings: Settings,
    limiter: RateLimiter,
    outbox: Outbox,
    viewer: Viewer,
    email: str,
    role: str,
    company_id: str,
    ip: str | None,
) -> IssuedInvitation:
    """Staff invite anyone anywhere; a company admin invites customers to their own company."""
    await limiter.hit("invite_user", viewer.user_id)
    address = clean_email(email)
    company = await _company_for_invitation(viewer, parse_id(company_id, "Company"))
    role = Role(role)
    if viewer.role != Role.STAFF and role != Role.CUSTOMER:
        raise Forbidden("Company admins may only invite customers.")
    _check_role_fits_company(role, company)
    # Whether the person has an account (elsewhere) is not the inviter's business: the
    # invitation is made and mailed either way; accepting it is what refuses a taken address.
    token = new_token(INVITATION_PREFIX)
    expires_at = now() + timedelta(seconds=settings.invitation_ttl_seconds)
    invitation = await Invitation.create(
        token_hash=token_digest(settings.secret_key, token),
        email=address,
        role=role,
        company=company,
        invited_by_id=viewer.user_id,
        expires_at=expires_at,
    )
    await audit.record(
        "invitation.created", actor_id=viewer.user_id, company_id=company.id, ip=ip, role=role
    )
    await account_mail.enqueue(
        settings, outbox, "invitation", invitation_id=invitation.id, token=token
    )
    return IssuedInvitation(token=token, expires_at=expires_at)


async def revoke_invitation(viewer: Viewer, email: str, company_id: str, ip: str | None) -> None:
    """Withdraw the open invitations of an address to a company (their mails stop too)."""
    address = clean_email(email)
    company = await _company_for_invitation(
        viewer, parse_id(company_id, "Company"), "Mutation.revokeInvitation"
    )
    deleted = await invitations_for_email(address).filter(
        company_id=company.id, accepted_at=None
    ).delete()
    if not deleted:
        raise NotFound("No open invitation for this address.")
    await audit.record("invitation.revoked", actor_id=viewer.user_id, company_id=company.id, ip=ip)


async def _company_for_invitation(
    viewer: Viewer, company_id: UUID, key: str = "Mutation.inviteUser"
) -> Company:
    company = await Company.filter(policy.reach_filter("Company", viewer), id=company_id).first()
    if company is None:
        raise NotFound("Company not found.")
    subject = policy.Subject("Company", company.id, company_id=company.id)
    held = await policy.relations(viewer, subject, policy.no_providers)
    if not policy.grants(policy.RULES[key], held):
        raise Forbidden("Only the company's admins may invite.")
    return company


def _check_role_fits_company(role: Role, company: Company) -> None:
    expected = {Role.CUSTOMER: CompanyKind.CUSTOMER, Role.PROVIDER: CompanyKind.PRINT_SERVICE}
    if role == Role.STAFF:
        raise BadUserInput("Staff accounts are created with `server.py create-staff` only.")
    if company.kind != expected[role]:
        raise BadUserInput(f"A {role} cannot belong to a {company.kind} company.", field="role")


async def accept_invitation(
    settings: Settings,
    limiter: RateLimiter,
    token: str,
    password: str,
    first_name: str,
    last_name: str,
    ip: str | None,
    user_agent: str | None = None,
) -> IssuedSession:
    await limiter.hit("accept_invitation_ip", ip)
    first = clean_name(first_name, "firstName")
    last = clean_name(last_name, "lastName")
    digest = token_digest(settings.secret_key, token if isinstance(token, str) else "")
    invitation = await Invitation.get_or_none(token_hash=digest)
    if invitation is None or invitation.accepted_at or invitation.expires_at <= now():
        raise BadUserInput("The invitation is not valid: unknown, used or expired.", field="token")
    passwords.check_policy(password, [invitation.email, first, last])
    password_hash = await passwords.hash_password(password)
    try:
        async with in_transaction():
            # Conditional update: two concurrent acceptances cannot both succeed.
            claimed = await Invitation.filter(id=invitation.id, accepted_at=None).update(
                accepted_at=now()
            )
            if claimed != 1:
                raise BadUserInput("The invitation was already used.", field="token")
            user = await User.create(
                email=invitation.email,
                first_name=first,
                last_name=last,
                role=invitation.role,
                company_id=invitation.company_id,
                password_hash=password_hash,
                signup_ip=ip,
            )
            await audit.record(
                "invitation.accepted", actor_id=user.id, company_id=user.company_id, ip=ip
            )
            # The invitation reached this mailbox: the address is verified.
            await User.filter(id=user.id).update(email_verified_at=now())
    except IntegrityError:
        raise _email_taken() from None
    return await start_session(settings, user, ip, user_agent)


async def create_staff(
    settings: Settings, email: str, password: str, first_name: str, last_name: str
) -> tuple[User, str]:
    """Staff exist only through the server CLI, with TOTP enrolled from the start.

    Returns the user and the otpauth:// provisioning URI to scan."""
    address = clean_email(email)
    passwords.check_policy(password, [address, first_name, last_name])
    secret = totp.new_secret()
    try:
        user = await User.create(
            email=address,
            first_name=clean_name(first_name, "firstName"),
            last_name=clean_name(last_name, "lastName"),
            role=Role.STAFF,
            password_hash=await passwords.hash_password(password),
            mfa_enabled=True,
            totp_secret_sealed=totp.seal_secret(settings.secret_key, secret),
        )
    except IntegrityError:
        raise _email_taken() from None
    await audit.record("staff.created", actor_id=user.id)
    return user, totp.provisioning_uri(secret, address)
