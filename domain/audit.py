"""The audit trail: one row per security-relevant action, with the caller's IP."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from storage.models import AuditEvent


async def record(
    kind: str,
    *,
    actor_id: UUID | None = None,
    ip: str | None = None,
    company_id: UUID | None = None,
    model_id: UUID | None = None,
    order_id: UUID | None = None,
    **detail: Any,
) -> None:
    """Write one event. Never put secrets (passwords, tokens, codes) into `detail`."""
    await AuditEvent.create(
        kind=kind,
        actor_id=actor_id,
        ip=ip,
        company_id=company_id,
        model_id=model_id,
        order_id=order_id,
        detail={key: _plain(value) for key, value in detail.items()},
    )


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value
