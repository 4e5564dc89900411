"""The root types: every query and mutation of the contract (shared/API.md)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from resolvers import accounts
from schema.connections import Connection
from schema.fields import guarded
from schema.types import (
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


@strawberry.type
class Query:
    @guarded()
    async def me(self, info: Info) -> UserType | None:
        return await accounts.me(info)

    @guarded()
    async def users(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> Connection[UserType]:
        return await accounts.users(info, first, after)

    @guarded()
    async def companies(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> Connection[CompanyType]:
        return await accounts.companies(info, first, after)


@strawberry.type
class Mutation:
    @guarded()
    async def sign_up(self, info: Info, input: SignUpInput) -> AuthPayload:
        return await accounts.sign_up(info, input)

    @guarded()
    async def log_in(
        self, info: Info, email: str, password: str, otp: str | None = None
    ) -> AuthPayload:
        return await accounts.log_in(info, email, password, otp)

    @guarded()
    async def log_out(self, info: Info) -> bool:
        return await accounts.log_out(info)

    @guarded()
    async def begin_totp_enrollment(self, info: Info) -> TotpSetupType:
        return await accounts.begin_totp_enrollment(info)

    @guarded()
    async def confirm_totp_enrollment(self, info: Info, code: str) -> bool:
        return await accounts.confirm_totp_enrollment(info, code)

    @guarded()
    async def create_company(
        self, info: Info, name: str, kind: CompanyKindEnum, address: AddressInput | None = None
    ) -> CompanyType:
        return await accounts.create_company(info, name, kind, address)

    @guarded()
    async def invite_user(
        self, info: Info, email: str, role: RoleEnum, company_id: strawberry.ID
    ) -> InvitationType:
        return await accounts.invite_user(info, email, role, company_id)

    @guarded()
    async def accept_invitation(
        self, info: Info, token: str, password: str, first_name: str, last_name: str
    ) -> AuthPayload:
        return await accounts.accept_invitation(info, token, password, first_name, last_name)

    @guarded(description="A token for partner tools; acts as its user. Shown once, stored hashed.")
    async def create_api_token(self, info: Info, name: str) -> str:
        return await accounts.create_api_token(info, name)

    @guarded(description="Revoke your API tokens of this name, at once.")
    async def revoke_api_token(self, info: Info, name: str) -> bool:
        return await accounts.revoke_api_token(info, name)
