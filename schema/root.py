"""The root types: every query and mutation of the contract (shared/API.md)."""

from __future__ import annotations

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types import Info

from resolvers import accounts, models, orders
from schema.connections import Connection
from schema.fields import guarded
from schema.model_types import CommentType, DownloadLinkType, ModelType
from schema.order_types import AuditEventType, OrderInput, OrderStatusEnum, OrderType
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
    async def model(self, info: Info, id: strawberry.ID) -> ModelType | None:
        return await models.model(info, id)

    @guarded(description="The models the caller may see, newest first.")
    async def models(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[ModelType]:
        return await models.models(info, first, after)

    @guarded()
    async def users(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[UserType]:
        return await accounts.users(info, first, after)

    @guarded()
    async def companies(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[CompanyType]:
        return await accounts.companies(info, first, after)

    @guarded(description="Null when the order does not exist or is not yours to see.")
    async def order(self, info: Info, id: strawberry.ID) -> OrderType | None:
        return await orders.order(info, id)

    @guarded(
        description="The orders the caller may see, newest first: a customer its company's, "
        "a provider those assigned to it and still open, staff all."
    )
    async def orders(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        status: OrderStatusEnum | None = None,
    ) -> Connection[OrderType]:
        return await orders.list_orders(info, first, after, status)

    @guarded(description="The audit trail, newest first (staff).")
    async def audit_log(
        self,
        info: Info,
        first: int | None = 50,
        after: str | None = None,
        kind: str | None = None,
        user_id: strawberry.ID | None = None,
        model_id: strawberry.ID | None = None,
        order_id: strawberry.ID | None = None,
    ) -> Connection[AuditEventType]:
        return await orders.audit_events(info, first, after, kind, user_id, model_id, order_id)


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

    @guarded(description="A JSON document of all personal data held about you.")
    async def export_my_data(self, info: Info) -> str:
        return await accounts.export_my_data(info)

    @guarded(description="Erase your account (anonymised; orders kept for legal retention).")
    async def delete_my_account(self, info: Info, password: str, otp: str | None = None) -> bool:
        return await accounts.delete_my_account(info, password, otp)

    @guarded(description="Multipart request only; the file is checked and encrypted as it arrives.")
    async def upload_model(self, info: Info, file: Upload, name: str | None = None) -> ModelType:
        return await models.upload_model(info, file, name)

    @guarded()
    async def delete_model(self, info: Info, id: strawberry.ID) -> bool:
        return await models.delete_model(info, id)

    @guarded()
    async def add_comment(self, info: Info, model_id: strawberry.ID, body: str) -> CommentType:
        return await models.add_comment(info, model_id, body)

    @guarded(description="A short-lived link to /files/<token>; each link and download is audited.")
    async def request_download(self, info: Info, model_id: strawberry.ID) -> DownloadLinkType:
        return await models.request_download(info, model_id)

    @guarded(description="A print request for one of your company's models.")
    async def request_order(self, info: Info, input: OrderInput) -> OrderType:
        return await orders.request_order(info, input)

    @guarded(description="Hand an order to a print service, or to another one (staff).")
    async def assign_order(
        self, info: Info, order_id: strawberry.ID, provider_company_id: strawberry.ID
    ) -> OrderType:
        return await orders.assign_order(info, order_id, provider_company_id)

    @guarded(description="One step of the order state machine; see Order.nextSteps.")
    async def update_order_status(
        self, info: Info, order_id: strawberry.ID, status: OrderStatusEnum, note: str | None = None
    ) -> OrderType:
        return await orders.update_order_status(info, order_id, status, note)
