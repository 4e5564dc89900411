"""Key rotation: re-wrap every data key under the active master key.

Files are not re-encrypted: each is sealed under its own data key, and only
that small wrapped key changes. Once a run reports nothing left under an old
master key, that key can be removed from MASTER_KEYS.
"""

from __future__ import annotations

from tortoise.expressions import Q

from storage.crypto import KeyRing, WrappedKey, rewrap
from storage.models import Model3D

BATCH = 500


async def rotate_keys(ring: KeyRing) -> int:
    """Re-wrap the data keys not under the active key; returns how many changed."""
    active_prefix = WrappedKey(ring.active_key_id, b"").to_str().rsplit(":", 1)[0] + ":"
    changed = 0
    while True:
        rows = await Model3D.filter(~Q(wrapped_key__startswith=active_prefix)).limit(BATCH)
        if not rows:
            return changed
        for row in rows:
            fresh = rewrap(ring, WrappedKey.from_str(row.wrapped_key)).to_str()
            # Conditional: a concurrent rotation or deletion simply wins.
            changed += await Model3D.filter(id=row.id, wrapped_key=row.wrapped_key).update(
                wrapped_key=fresh
            )


async def keys_in_use() -> dict[str, int]:
    """How many files each master key still wraps (to know when an old key may go)."""
    counts: dict[str, int] = {}
    for wrapped in await Model3D.all().values_list("wrapped_key", flat=True):
        key_id = WrappedKey.from_str(str(wrapped)).key_id
        counts[key_id] = counts.get(key_id, 0) + 1
    return counts
