"""Account types: User, Company, Address and the payloads of account mutations."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import strawberry
from strawberry.types import Info

from domain import catalogue, credentials
from domain.enums import CompanyKind, Role
from domain.policy import Subject
from runtime import notices
from schema.fields import from_row, guarded
from storage.models import Company, User

if TYPE_CHECKING:
    from schema.materials.types import MaterialType

# strawberry.enum registers the classes themselves; the aliases name them as GraphQL types.
strawberry.enum(Role, name="Role")
strawberry.enum(CompanyKind, name="CompanyKind")
RoleEnum: TypeAlias = Role
CompanyKindEnum: TypeAlias = CompanyKind


@strawberry.type(name="Address")
class AddressType:
    line1: str = guarded()
    line2: str | None = guarded()
    postal_code: str = guarded()
    city: str = guarded()
    country: str = guarded()

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AddressType | None:
        """None when there is none, or when it was erased (`{"erased": true}`, see
        domain/privacy.py): an erased address is no address, never a broken one."""
        if not data or data.get("erased") or "line1" not in data:
            return None
        return cls(
            line1=data["line1"],
            line2=data.get("line2"),
            postal_code=data["postal_code"],
            city=data["city"],
            country=data["country"],
        )


@strawberry.input(name="AddressInput")
class AddressInput:
    line1: str
    postal_code: str
    city: str
    country: str
    line2: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "line1": self.line1,
            "line2": self.line2,
            "postal_code": self.postal_code,
            "city": self.city,
            "country": self.country,
        }


@strawberry.type(name="User")
class UserType:
    row: strawberry.Private[User]

    def policy_subject(self) -> Subject:
        return Subject("User", self.row.id, company_id=self.row.company_id)

    id: strawberry.ID = from_row("id")
    # Nullable: a colleague who is not the company's admin reaches the user, not these.
    email: str | None = from_row("email")
    first_name: str = from_row("first_name")
    last_name: str = from_row("last_name")
    phone: str | None = from_row("phone")

    @guarded()
    def address(self) -> AddressType | None:
        return AddressType.from_dict(self.row.address)

    role: RoleEnum = from_row("role")
    is_company_admin: bool = from_row("is_company_admin")

    @guarded()
    async def company(self, info: Info) -> CompanyType | None:
        if self.row.company_id is None:
            return None
        company = await info.context.loaders.company.load(self.row.company_id)
        return CompanyType(row=company) if company else None

    mfa_enabled: bool | None = from_row("mfa_enabled")
    created_at: datetime = from_row("created_at")
    signup_ip: str | None = from_row("signup_ip")

    # Self only (API.md additions). Nullable: a company admin reaches the user, not these.
    @guarded()
    async def sessions(self, info: Info) -> list[SessionType] | None:
        ctx = info.context
        rows = await credentials.live_sessions(ctx.settings, ctx.viewer, self.row.id)
        return [SessionType.of(row) for row in rows]

    @guarded()
    async def api_tokens(self, info: Info) -> list[ApiTokenInfoType] | None:
        rows = await credentials.live_api_tokens(self.row.id)
        return [
            ApiTokenInfoType(name=r.name, created_at=r.created_at, last_used_at=r.last_used_at)
            for r in rows
        ]

    @guarded()
    def email_verified(self) -> bool | None:
        return self.row.email_verified_at is not None

    @guarded(description="Whether e-mail notices about orders reach this user (self only).")
    async def order_notices(self) -> bool | None:
        return await notices.wants_notices(self.row.id)


@strawberry.type(name="Session")
class SessionType:
    id: strawberry.ID = guarded()
    created_at: datetime = guarded()
    last_seen_at: datetime = guarded()
    ip: str | None = guarded()
    user_agent: str | None = guarded()
    current: bool = guarded()

    @classmethod
    def of(cls, row: credentials.SessionInfo) -> SessionType:
        return cls(
            id=strawberry.ID(str(row.id)),
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            ip=row.ip,
            user_agent=row.user_agent,
            current=row.current,
        )


@strawberry.type(name="ApiTokenInfo")
class ApiTokenInfoType:
    name: str = guarded()
    created_at: datetime = guarded()
    last_used_at: datetime | None = guarded()


@strawberry.type(name="Company")
class CompanyType:
    row: strawberry.Private[Company]

    def policy_subject(self) -> Subject:
        return Subject("Company", self.row.id, company_id=self.row.id)

    id: strawberry.ID = from_row("id")
    name: str = from_row("name")
    kind: CompanyKindEnum = from_row("kind")

    @guarded()
    def address(self) -> AddressType | None:
        return AddressType.from_dict(self.row.address)

    @guarded()
    async def members(self, info: Info) -> list[UserType]:
        users = await info.context.loaders.members.load(self.row.id)
        return [UserType(row=user) for user in users]

    @guarded(description="What a print service offers (set by staff); empty for customers.")
    async def materials(
        self,
    ) -> list[Annotated[MaterialType, strawberry.lazy("schema.materials.types")]]:
        from schema.materials.types import MaterialType  # a cycle: materials name models

        rows = await catalogue.materials_of(self.row.id)
        return [MaterialType.of_row(row) for row in rows]


@strawberry.type(name="AuthPayload")
class AuthPayload:
    token: str = guarded()
    expires_at: datetime = guarded()
    user: UserType = guarded()


@strawberry.type(name="TotpSetup")
class TotpSetupType:
    secret: str = guarded()
    provisioning_uri: str = guarded()
    recovery_codes: list[str] = guarded()


@strawberry.type(name="Invitation")
class InvitationType:
    token: str = guarded()
    expires_at: datetime = guarded()


@strawberry.input(name="SignUpInput")
class SignUpInput:
    email: str
    password: str
    first_name: str
    last_name: str
    company_name: str
    address: AddressInput
    phone: str | None = None
