"""GDPR (DSGVO) rights: export everything held about the caller; erase an account.

Erasure anonymises rather than deletes the user row: models, comments and
orders belong to the company and must keep an author, and orders must be kept
for the legal retention period (German commercial and tax law: 10 years for
invoices). What identifies the person goes: name, email, phone, address,
password and second factor, sessions and tokens, every IP address recorded
for them, and the shipping addresses of their orders. Billing address and
billing information of orders stay, as invoices require them.

Open orders of an erased customer (decision, issue 9): what has not started
production (REQUESTED, ASSIGNED, ACCEPTED, DECLINED) is cancelled at once, with
a step in its history, so no provider prints for a customer who is gone. What is
in production or shipped is a running contract: it goes on to delivery and keeps
its shipping address until then (GDPR Art. 17(3)(b), 6(1)(b)); the address is
erased when the order reaches DELIVERED or CANCELLED (`erase_when_closed`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise.expressions import F
from tortoise.timezone import now
from tortoise.transactions import in_transaction

from domain import audit, credentials, totp
from domain.errors import MfaRequired
from domain.order_states import OrderStatus
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
    Quote,
    RecoveryCode,
    Session,
    User,
)

if TYPE_CHECKING:  # the limiter is infrastructure; the rules only call hit()
    from runtime.rate_limits import RateLimiter

ERASED_ADDRESS = {"erased": True}
# Cancelled when their customer is erased: production has not started.
CANCEL_ON_ERASURE = (
    OrderStatus.REQUESTED,
    OrderStatus.ASSIGNED,
    OrderStatus.ACCEPTED,
    OrderStatus.DECLINED,
)
# Kept, with their shipping address, until delivered: a running contract needs them.
KEEP_UNTIL_DELIVERY = (OrderStatus.IN_PRODUCTION, OrderStatus.SHIPPED)
ERASURE_NOTE = "Cancelled: the customer's account was erased."


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
            "price",
            "currency",
            "created_at",
            "ip",
        ),
        "quotes": await _rows(
            Quote.filter(created_by_id=user.id),
            "id",
            "model_id",
            "material_code",
            "created_at",
            "expires_at",
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
    # Whole rows, not .values(): sealed columns are opened when a row is loaded.
    key = query.model._meta.pk_attr
    return [{name: getattr(row, name) for name in fields} for row in await query.order_by(key)]


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
    # Through the instance: sealed columns are bound to their row, and the
    # e-mail's blind index follows the new address.
    user.update_from_dict(
        {
            "email": f"deleted-{user.id}@invalid",
            "first_name": "Deleted",
            "last_name": "User",
            "phone": None,
            "address": None,
            "password_hash": "!",  # matches no password: Argon2 hashes start with $argon2
            "mfa_enabled": False,
            "totp_secret_sealed": None,
            "totp_pending_sealed": None,
            "signup_ip": None,
            "is_company_admin": False,
            "deleted_at": now(),
        }
    )
    await user.save()
    await Session.filter(user_id=user.id).delete()
    await ApiToken.filter(user_id=user.id).delete()
    await RecoveryCode.filter(user_id=user.id).delete()
    # Open invitations the person sent go with them; their pending mails check and stop.
    await Invitation.filter(invited_by_id=user.id, accepted_at=None).delete()
    await Model3D.filter(owner_id=user.id).update(upload_ip=None)
    await Comment.filter(author_id=user.id).update(ip=None)
    await _cancel_open_orders(user)
    # Sealed columns are written through instances (storage/sealed_fields.py), never
    # a bulk update; the address of an order in production stays until delivery.
    for order in await Order.filter(customer_id=user.id):
        changes: dict[str, object] = {"ip": None}
        if order.status not in KEEP_UNTIL_DELIVERY:
            changes["shipping_address"] = ERASED_ADDRESS
        order.update_from_dict(changes)
        await order.save(update_fields=list(changes))
    await OrderEvent.filter(by_id=user.id).update(ip=None)
    await AuditEvent.filter(actor_id=user.id).update(ip=None)


async def _cancel_open_orders(user: User) -> None:
    """Cancel the erased customer's orders that have not started production."""
    for order in await Order.filter(customer_id=user.id, status__in=CANCEL_ON_ERASURE):
        await Order.filter(id=order.id).update(
            status=OrderStatus.CANCELLED, version=F("version") + 1
        )
        await OrderEvent.create(order_id=order.id, status=OrderStatus.CANCELLED, note=ERASURE_NOTE)
        await audit.record(
            "order.status_changed",
            actor_id=user.id,
            company_id=order.company_id,
            model_id=order.model_id,
            order_id=order.id,
            reason="customer_erased",
            **{"from": str(order.status), "to": str(OrderStatus.CANCELLED)},
        )


async def erase_when_closed(order_id: UUID) -> None:
    """An order of an erased customer that was kept until delivery no longer needs
    its shipping address once DELIVERED or CANCELLED."""
    order = await Order.get(id=order_id)
    if order.status not in (OrderStatus.DELIVERED, OrderStatus.CANCELLED):
        return
    if (
        order.customer_id is None
        or await User.filter(id=order.customer_id, deleted_at__isnull=False).exists()
    ):
        order.shipping_address = ERASED_ADDRESS  # sealed: saved through the instance
        await order.save(update_fields=["shipping_address"])
