"""Resolvers of account operations: read arguments, call the domain, wrap the result."""

from __future__ import annotations

from strawberry.types import Info

from domain import accounts, auth, privacy
from domain.pagination import paginate
from schema.connections import Connection, connection_from_page
from schema.types import (
    AddressInput,
    AuthPayload,
    CompanyType,
    InvitationType,
    SignUpInput,
    TotpSetupType,
    UserType,
)
from storage.models import Company, User


def _payload(info: Info, issued: auth.IssuedSession) -> AuthPayload:
    # The rest of the response is read by the person who just proved who they are.
    info.context.set_viewer(issued.viewer, issued.user)
    return AuthPayload(
        token=issued.token, expires_at=issued.expires_at, user=UserType(row=issued.user)
    )


async def me(info: Info) -> UserType | None:
    """The caller, None when anonymous; a token that is no longer valid is an error."""
    if info.context.auth_error is not None:
        raise info.context.auth_error
    user = info.context.user
    return UserType(row=user) if user is not None else None


async def users(info: Info, first: int, after: str | None) -> Connection[UserType]:
    page = await paginate(User.filter(deleted_at=None), first, after)
    return connection_from_page(page, lambda row: UserType(row=row))


async def companies(info: Info, first: int, after: str | None) -> Connection[CompanyType]:
    page = await paginate(Company.all(), first, after)
    return connection_from_page(page, lambda row: CompanyType(row=row))


async def sign_up(info: Info, data: SignUpInput) -> AuthPayload:
    ctx = info.context
    issued = await accounts.sign_up(
        ctx.settings,
        ctx.services.limiter,
        accounts.SignUp(
            email=data.email,
            password=data.password,
            first_name=data.first_name,
            last_name=data.last_name,
            company_name=data.company_name,
            address=data.address.to_dict(),
            phone=data.phone,
        ),
        ctx.ip,
    )
    return _payload(info, issued)


async def log_in(info: Info, email: str, password: str, otp: str | None) -> AuthPayload:
    ctx = info.context
    issued = await auth.log_in(ctx.settings, ctx.services.limiter, email, password, otp, ctx.ip)
    return _payload(info, issued)


async def log_out(info: Info) -> bool:
    await auth.log_out(info.context.viewer)
    return True


async def begin_totp_enrollment(info: Info) -> TotpSetupType:
    setup = await accounts.begin_totp_enrollment(info.context.settings, info.context.viewer)
    return TotpSetupType(
        secret=setup.secret,
        provisioning_uri=setup.provisioning_uri,
        recovery_codes=setup.recovery_codes,
    )


async def confirm_totp_enrollment(info: Info, code: str) -> bool:
    ctx = info.context
    await accounts.confirm_totp_enrollment(
        ctx.settings, ctx.services.limiter, ctx.viewer, code, ctx.ip
    )
    return True


async def create_company(
    info: Info, name: str, kind: str, address: AddressInput | None
) -> CompanyType:
    ctx = info.context
    company = await accounts.create_company(
        ctx.viewer, name, kind, address.to_dict() if address else None, ctx.ip
    )
    return CompanyType(row=company)


async def invite_user(info: Info, email: str, role: str, company_id: str) -> InvitationType:
    ctx = info.context
    issued = await accounts.invite_user(
        ctx.settings, ctx.services.limiter, ctx.viewer, email, role, company_id, ctx.ip
    )
    return InvitationType(token=issued.token, expires_at=issued.expires_at)


async def accept_invitation(
    info: Info, token: str, password: str, first_name: str, last_name: str
) -> AuthPayload:
    ctx = info.context
    issued = await accounts.accept_invitation(
        ctx.settings, ctx.services.limiter, token, password, first_name, last_name, ctx.ip
    )
    return _payload(info, issued)


async def create_api_token(info: Info, name: str) -> str:
    ctx = info.context
    _, token = await auth.create_api_token(ctx.settings, ctx.viewer, name, ctx.ip)
    return token


async def export_my_data(info: Info) -> str:
    return await privacy.export_my_data(info.context.viewer)


async def delete_my_account(info: Info, password: str, otp: str | None) -> bool:
    ctx = info.context
    await privacy.delete_my_account(
        ctx.settings, ctx.services.limiter, ctx.viewer, password, otp, ctx.ip
    )
    return True


async def revoke_api_token(info: Info, name: str) -> bool:
    ctx = info.context
    await auth.revoke_api_token(ctx.viewer, name, ctx.ip)
    return True
