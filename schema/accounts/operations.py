"""Account queries and mutations: sign-up, log-in, TOTP, companies, invitations,
API tokens, personal data. Each reads its arguments, calls the domain, wraps the row."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from domain import account_mail, accounts, auth, credentials, policy, privacy
from domain.pagination import DEFAULT_PAGE, paginate
from runtime import notices
from schema.accounts.types import (
    AddressInput,
    AuthPayload,
    CompanyKindEnum,
    CompanyType,
    InvitationType,
    RoleEnum,
    SignUpInput,
    TotpSetupType,
    UserType,
)
from schema.connections import Connection, connection_from_page
from schema.fields import guarded
from storage.models import Company, User


def _agent(info: Info) -> str | None:
    request = info.context.request
    return request.headers.get("user-agent") if request is not None else None


def _payload(info: Info, issued: auth.IssuedSession) -> AuthPayload:
    # The rest of the response is read by the person who just proved who they are.
    info.context.set_viewer(issued.viewer, issued.user)
    return AuthPayload(
        token=issued.token, expires_at=issued.expires_at, user=UserType(row=issued.user)
    )


@strawberry.type
class Query:
    @guarded()
    async def me(self, info: Info) -> UserType | None:
        """The caller, None when anonymous; a token that is no longer valid is an error."""
        if info.context.auth_error is not None:
            raise info.context.auth_error
        user = info.context.user
        return UserType(row=user) if user is not None else None

    @guarded()
    async def users(
        self, info: Info, first: int | None = DEFAULT_PAGE, after: str | None = None
    ) -> Connection[UserType]:
        reach = policy.reach_filter("User", info.context.viewer)
        page = await paginate(User.filter(reach, deleted_at=None), first, after)
        return connection_from_page(page, lambda row: UserType(row=row))

    @guarded()
    async def companies(
        self, info: Info, first: int | None = DEFAULT_PAGE, after: str | None = None
    ) -> Connection[CompanyType]:
        reach = policy.reach_filter("Company", info.context.viewer)
        page = await paginate(Company.filter(reach), first, after)
        return connection_from_page(page, lambda row: CompanyType(row=row))


@strawberry.type
class Mutation:
    @guarded()
    async def sign_up(self, info: Info, input: SignUpInput) -> AuthPayload:
        ctx = info.context
        data = accounts.SignUp(
            email=input.email,
            password=input.password,
            first_name=input.first_name,
            last_name=input.last_name,
            company_name=input.company_name,
            address=input.address.to_dict(),
            phone=input.phone,
        )
        issued = await accounts.sign_up(
            ctx.settings, ctx.services.limiter, ctx.services.jobs, data, ctx.ip, _agent(info)
        )
        return _payload(info, issued)

    @guarded()
    async def log_in(
        self, info: Info, email: str, password: str, otp: str | None = None
    ) -> AuthPayload:
        ctx = info.context
        issued = await auth.log_in(
            ctx.settings, ctx.services.limiter, email, password, otp, ctx.ip, _agent(info)
        )
        return _payload(info, issued)

    @guarded()
    async def log_out(self, info: Info) -> bool:
        await auth.log_out(info.context.viewer)
        return True

    @guarded()
    async def begin_totp_enrollment(
        self, info: Info, password: str | None = None
    ) -> TotpSetupType:
        ctx = info.context
        setup = await accounts.begin_totp_enrollment(
            ctx.settings, ctx.services.limiter, ctx.viewer, password
        )
        return TotpSetupType(
            secret=setup.secret,
            provisioning_uri=setup.provisioning_uri,
            recovery_codes=setup.recovery_codes,
        )

    @guarded()
    async def confirm_totp_enrollment(self, info: Info, code: str) -> bool:
        ctx = info.context
        await accounts.confirm_totp_enrollment(
            ctx.settings, ctx.services.limiter, ctx.viewer, code, ctx.ip
        )
        return True

    @guarded()
    async def create_company(
        self, info: Info, name: str, kind: CompanyKindEnum, address: AddressInput | None = None
    ) -> CompanyType:
        ctx = info.context
        company = await accounts.create_company(
            ctx.viewer, name, kind, address.to_dict() if address else None, ctx.ip
        )
        return CompanyType(row=company)

    @guarded()
    async def invite_user(
        self, info: Info, email: str, role: RoleEnum, company_id: strawberry.ID
    ) -> InvitationType:
        ctx = info.context
        issued = await accounts.invite_user(
            ctx.settings,
            ctx.services.limiter,
            ctx.services.jobs,
            ctx.viewer,
            email,
            role,
            company_id,
            ctx.ip,
        )
        return InvitationType(token=issued.token, expires_at=issued.expires_at)

    @guarded()
    async def accept_invitation(
        self, info: Info, token: str, password: str, first_name: str, last_name: str
    ) -> AuthPayload:
        ctx = info.context
        issued = await accounts.accept_invitation(
            ctx.settings,
            ctx.services.limiter,
            token,
            password,
            first_name,
            last_name,
            ctx.ip,
            _agent(info),
        )
        return _payload(info, issued)

    @guarded(description="A token for partner tools; acts as its user. Shown once, stored hashed.")
    async def create_api_token(self, info: Info, name: str, password: str | None = None) -> str:
        ctx = info.context
        user = await User.get(id=ctx.viewer.user_id)
        await credentials.require_fresh_proof(ctx.services.limiter, ctx.viewer, user, password)
        _, token = await auth.create_api_token(ctx.settings, ctx.viewer, name, ctx.ip)
        return token

    @guarded(description="Revoke your API tokens of this name, at once.")
    async def revoke_api_token(self, info: Info, name: str) -> bool:
        ctx = info.context
        await auth.revoke_api_token(ctx.viewer, name, ctx.ip)
        return True

    @guarded(description="A JSON document of all personal data held about you.")
    async def export_my_data(self, info: Info) -> str:
        return await privacy.export_my_data(info.context.viewer)

    @guarded(description="Erase your account (anonymised; orders kept for legal retention).")
    async def delete_my_account(self, info: Info, password: str, otp: str | None = None) -> bool:
        ctx = info.context
        await privacy.delete_my_account(
            ctx.settings, ctx.services.limiter, ctx.viewer, password, otp, ctx.ip
        )
        return True

    @guarded(description="Change your password; ends your other sessions.")
    async def change_password(
        self, info: Info, current_password: str, new_password: str, otp: str | None = None
    ) -> bool:
        ctx = info.context
        await credentials.change_password(
            ctx.settings, ctx.services.limiter, ctx.viewer, current_password, new_password, otp,
            ctx.ip,
        )
        return True

    @guarded(description="Always true; a known address gets a one-time link valid 30 minutes.")
    async def request_password_reset(self, info: Info, email: str) -> bool:
        ctx = info.context
        await account_mail.request_password_reset(
            ctx.settings, ctx.services.limiter, ctx.services.jobs, email, ctx.ip
        )
        return True

    @guarded(description="A new password with a mailed link; ends every session.")
    async def reset_password(
        self, info: Info, token: str, new_password: str, otp: str | None = None
    ) -> AuthPayload:
        ctx = info.context
        issued = await account_mail.reset_password(
            ctx.settings, ctx.services.limiter, token, new_password, otp, ctx.ip, _agent(info)
        )
        return _payload(info, issued)

    @guarded()
    async def verify_email(self, info: Info, token: str) -> bool:
        ctx = info.context
        await account_mail.verify_email(ctx.settings, ctx.services.limiter, token, ctx.ip)
        return True

    @guarded()
    async def revoke_session(self, info: Info, id: strawberry.ID) -> bool:
        await credentials.revoke_session(info.context.viewer, id, info.context.ip)
        return True

    @guarded()
    async def revoke_invitation(self, info: Info, email: str, company_id: strawberry.ID) -> bool:
        await accounts.revoke_invitation(info.context.viewer, email, company_id, info.context.ip)
        return True

    @guarded()
    async def regenerate_recovery_codes(self, info: Info, password: str, otp: str) -> list[str]:
        ctx = info.context
        return await credentials.regenerate_recovery_codes(
            ctx.settings, ctx.services.limiter, ctx.viewer, password, otp, ctx.ip
        )

    @guarded(description="Turn e-mail notices about orders on or off for yourself.")
    async def set_order_notices(self, info: Info, enabled: bool) -> bool:
        viewer = info.context.viewer
        assert viewer.user_id is not None  # the policy admits signed-in callers only
        return await notices.set_opt_out(viewer.user_id, enabled)
