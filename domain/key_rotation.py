"""Key rotation: re-wrap every data key under the active master key.

Files are not re-encrypted: each is sealed under its own data key, and only
that small wrapped key changes. The same holds for the sealed personal-data
columns (storage/sealed_fields.py): each value's wrapped data key is replaced,
its ciphertext kept. Once a run reports nothing left under an old master key,
that key can be removed from MASTER_KEYS.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from tortoise.expressions import Q
from tortoise.models import Model as OrmModel

from storage.crypto import KeyRing, WrappedKey, rewrap
from storage.models import Model3D
from storage.sealed_fields import key_id_of, rewrap_value, sealed_columns

BATCH = 500


async def rotate_keys(ring: KeyRing) -> int:
    """Re-wrap the data keys not under the active key; returns how many changed."""
    changed = await _rotate_files(ring)
    for model, column in sealed_columns():
        changed += await _rotate_column(ring, model, column)
    return changed


async def _rotate_files(ring: KeyRing) -> int:
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


async def _rotate_column(ring: KeyRing, model: type[OrmModel], column: str) -> int:
    """Re-wrap one sealed column's data keys, reading the stored strings as they are.

    Stored strings (`values_list`), not model instances: the ciphertext is never
    opened; the field lets stored strings through filters and updates unchanged.
    Pages by primary key (JSON columns have no text filters in tortoise)."""
    changed = 0
    async for row_id, stored in _stored(model, column):
        if key_id_of(stored) == ring.active_key_id:
            continue
        # Conditional: a concurrent write (or rotation) of this value simply wins.
        changed += await model.filter(**{model._meta.pk_attr: row_id, column: stored}).update(
            **{column: rewrap_value(stored, ring)}
        )
    return changed


async def _stored(model: type[OrmModel], column: str) -> AsyncIterator[tuple[Any, str]]:
    """(row id, stored sealed string) of every row with a value, in batches."""
    key = model._meta.pk_attr
    last: Any = None
    while True:
        query = model.filter(**{f"{key}__gt": last}) if last is not None else model.all()
        rows = await query.order_by(key).limit(BATCH).values_list(key, column)
        for row_id, stored in rows:
            if stored is not None:
                yield row_id, str(stored)
        if len(rows) < BATCH:
            return
        last = rows[-1][0]


async def keys_in_use() -> dict[str, int]:
    """How many files and sealed values each master key still wraps (to know when
    an old key may go)."""
    counts: dict[str, int] = {}
    for wrapped in await Model3D.all().values_list("wrapped_key", flat=True):
        key_id = WrappedKey.from_str(str(wrapped)).key_id
        counts[key_id] = counts.get(key_id, 0) + 1
    for model, column in sealed_columns():
        async for _, stored in _stored(model, column):
            key_id = key_id_of(stored)
            counts[key_id] = counts.get(key_id, 0) + 1
    return counts
