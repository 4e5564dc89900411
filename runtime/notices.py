"""E-mail notices about orders, sent by the job engine (never inside a request).

Two notices: a status change goes to the customer who ordered, a new assignment to the
members of the provider company it was assigned to. A user who opted out
(`setOrderNotices(enabled: false)`, a NoticeOptOut row) and deleted accounts get none.
The mail carries the order id and status only (runtime/mailer.py templates).
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from domain.enums import Role
from runtime.mailer import Mailer, MailError, MailRetryableError
from storage.models import NoticeOptOut, Order, User

log = logging.getLogger("printvault.notices")

ORDER_STATUS = "order_status"
NEW_ASSIGNMENT = "new_assignment"
KINDS = (ORDER_STATUS, NEW_ASSIGNMENT)
# Waits before the second and third try of one mail when the server asks to try later
# (4xx, down, timeout): a short outage costs no notice; a long one is logged.
RETRY_WAITS_S: tuple[float, ...] = (2.0, 15.0)


async def recipients(kind: str, order: Order) -> list[User]:
    if kind == ORDER_STATUS:
        users = await User.filter(id=order.customer_id) if order.customer_id else []
    elif kind == NEW_ASSIGNMENT and order.provider_id is not None:
        users = await User.filter(company_id=order.provider_id, role=Role.PROVIDER)
    else:
        return []
    opted_out = set(
        await NoticeOptOut.filter(user_id__in=[u.id for u in users]).values_list(
            "user_id", flat=True
        )
    )
    return [u for u in users if u.deleted_at is None and u.id not in opted_out]


async def send(mailer: Mailer | None, kind: str, order_id: UUID, status: str) -> int:
    """Mail one notice to each recipient; returns how many were sent."""
    if mailer is None or kind not in KINDS:
        return 0
    order = await Order.get_or_none(id=order_id)
    if order is None:
        return 0
    sent = 0
    for user in await recipients(kind, order):
        context: dict[str, object] = {"order_id": str(order.id)}
        if kind == ORDER_STATUS:
            context["status"] = status
        if await _send_one(mailer, user.email, kind, context):
            sent += 1
    return sent


async def _send_one(mailer: Mailer, to: str, kind: str, context: dict[str, object]) -> bool:
    for wait in (*RETRY_WAITS_S, None):
        try:
            await mailer.send(to, kind, **context)
            return True
        except MailRetryableError as error:
            if wait is None:
                log.warning("notice %s not sent after retries (%s)", kind, error)
                return False
            await asyncio.sleep(wait)
        except MailError as error:  # refused for good; the other recipients still get theirs
            log.warning("notice %s not sent (%s)", kind, error)
            return False
    return False


async def set_opt_out(user_id: UUID, enabled: bool) -> bool:
    """`enabled` False records the opt-out; True removes it. Returns `enabled`."""
    if enabled:
        await NoticeOptOut.filter(user_id=user_id).delete()
    elif not await NoticeOptOut.exists(user_id=user_id):
        await NoticeOptOut.create(user_id=user_id)
    return enabled


async def wants_notices(user_id: UUID) -> bool:
    return not await NoticeOptOut.exists(user_id=user_id)
