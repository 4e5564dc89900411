"""IP retention: after the retention period an address is cut to its network
(IPv4 /24, IPv6 /48), which still tells staff roughly where a request came
from but no longer points at a person (GDPR data minimisation)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from tortoise.timezone import now

from storage.models import AuditEvent, Comment, Model3D, Order, OrderEvent, Session, User

# (table, IP column, timestamp column)
IP_COLUMNS = (
    (User, "signup_ip", "created_at"),
    (Model3D, "upload_ip", "created_at"),
    (Comment, "ip", "created_at"),
    (Order, "ip", "created_at"),
    (OrderEvent, "ip", "at"),
    (AuditEvent, "ip", "at"),
    (Session, "ip", "created_at"),
)
BATCH = 500


def truncate(address: str) -> str:
    """`203.0.113.57` -> `203.0.113.0/24`; `2001:db8:1:2::7` -> `2001:db8:1::/48`."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


async def truncate_old_ips(retention_days: int) -> int:
    """Truncate every full IP address older than the retention period; returns how many.

    Addresses are sealed (storage/sealed_fields.py), so the database cannot tell
    a full address from a network: old rows are opened here, in batches, and only
    full addresses are re-sealed as their network."""
    cutoff = now() - timedelta(days=retention_days)
    changed = 0
    for model, ip_field, time_field in IP_COLUMNS:
        key = model._meta.pk_attr
        query = model.filter(**{f"{time_field}__lt": cutoff, f"{ip_field}__not_isnull": True})
        last = None
        while True:
            page = query.filter(**{f"{key}__gt": last}) if last is not None else query
            rows = await page.order_by(key).limit(BATCH).only(key, ip_field)
            for row in rows:
                address = getattr(row, ip_field)
                if "/" not in address:
                    setattr(row, ip_field, truncate(address))
                    await row.save(update_fields=[ip_field])
                    changed += 1
            if len(rows) < BATCH:
                break
            last = getattr(rows[-1], key)
    return changed
