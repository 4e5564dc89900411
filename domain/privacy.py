"""GDPR (DSGVO) rights: export everything held about the caller; erase an account.

Erasure anonymises rather than deletes the user row: models, comments and
orders belong to the company and must keep an author, and orders must be kept
for the legal retention period (German commercial and tax law: 10 years for
invoices). What identifies the person goes: name, email, phone, address,
password and second factor, sessions and tokens, every IP address recorded
for them, and the shipping addresses of their orders. Billing address and
billing information of orders stay, as invoices require them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise.timezone import now
from tortoise.transactions import in_transaction

from domain import audit, credentials, totp
from domain.errors import MfaRequired
from domain.policy import Viewer
from runtime.settings import Settings
from storage.models import (
    ApiToken,
    AuditEvent,
    Comment,
    Invitation,
    Model3D,
    Order,
    OrderEvent,
    RecoveryCode,
    Session,
    User,
)

if TYPE_CHECKING:  # the limiter is infrastructure; the rules only call hit()
    from runtime.rate_limits import RateLimiter

ERASED_ADDRESS = {"erased": True}


async def export_my_data(viewer: Viewer) -> str:
    """Every personal datum we hold about the caller, as one JSON document."""
    user = await User.get(id=viewer.user_id).select_related("company")
    document = {
        "exportedAt": now().isoformat(),
        "account": _account(user),
        "sessions": await _rows(
            Session.filter(user_id=user.id),
            "created_at",
            "last_seen_at",
            "expires_at",
            "revoked_at",
            "ip",
        ),
        "apiTokens": await _rows(
            ApiToken.filter(user_id=user.id), "name", "created_at", "last_used_at", "revoked_at"
        ),
        "modelsUploaded": await _rows(
            Model3D.filter(owner_id=user.id),
            "id",
            "name",
            "file_name",
            "file_size",
            "created_at",
            "upload_ip",
        ),
        "comments": await _rows(
            Comment.filter(author_id=user.id), "id", "model_id", "body", "created_at", "ip"
        ),
        "orders": await _rows(
            Order.filter(customer_id=user.id),
            "id",
            "model_id",
            "status",
            "quantity",
            "material",
            "shipping_address",
            "billing_address",
            "billing_info",
            "created_at",
            "ip",
        ),
        "orderSteps": await _rows(
            OrderEvent.filter(by_id=user.id), "order_id", "status", "at", "note", "ip"
        ),
        "auditEvents": await _rows(
            AuditEvent.filter(actor_id=user.id),
            "kind",
            "at",
            "ip",
            "model_id",
            "order_id",
            "detail",
        ),
    }
    return json.dumps(document, default=_plain, ensure_ascii=False)


def _account(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "phone": user.phone,
        "address": user.address,
        "role": user.role,
        "company": user.company.name if user.company else None,
        "isCompanyAdmin": user.is_company_admin,
        "mfaEnabled": user.mfa_enabled,
        "createdAt": user.created_at,
        "signupIp": user.signup_ip,
    }


async def _rows(query, *fields: str) -> list[dict[str, Any]]:
    key = query.model._meta.pk_attr
    return [dict(row) for row in await query.order_by(key).values(*fields)]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return str(value)


async def delete_my_account(
    settings: Settings,
    limiter: RateLimiter,
    viewer: Viewer,
    password: str,
    otp: str | None,
    ip: str | None,
) -> None:
    """Re-authenticate, then anonymise the person in one transaction; sessions and
    tokens stop working at once."""
    user = await User.get(id=viewer.user_id)
    await credentials.require_fresh_proof(limiter, viewer, user, password)
    if user.mfa_enabled:
        await limiter.hit("otp_account", user.id)
        secret = totp.unseal_secret(settings.secret_key, user.totp_secret_sealed or "")
        if not otp or not await totp.consume_code(user, secret, otp):
            raise MfaRequired("A valid one-time code is required to delete the account.")
    async with in_transaction():
        await _anonymise(user)
        await audit.record("account.deleted", actor_id=user.id)


async def _anonymise(user: User) -> None:
    await User.filter(id=user.id).update(
        email=f"deleted-{user.id}@invalid",
        first_name="Deleted",
        last_name="User",
        phone=None,
        address=None,
        password_hash="!",  # noqa: S106 (matches no password: Argon2 hashes start with $argon2)
        mfa_enabled=False,
        totp_secret_sealed=None,
        totp_pending_sealed=None,
        signup_ip=None,
        is_company_admin=False,
        deleted_at=now(),
    )
    await Session.filter(user_id=user.id).delete()
    await ApiToken.filter(user_id=user.id).delete()
    await RecoveryCode.filter(user_id=user.id).delete()
    # Open invitations the person sent go with them; their pending mails check and stop.
    await Invitation.filter(invited_by_id=user.id, accepted_at=None).delete()
    await Model3D.filter(owner_id=user.id).update(upload_ip=None)
    await Comment.filter(author_id=user.id).update(ip=None)
    await Order.filter(customer_id=user.id).update(ip=None, shipping_address=ERASED_ADDRESS)
    await OrderEvent.filter(by_id=user.id).update(ip=None)
    await AuditEvent.filter(actor_id=user.id).update(ip=None)
