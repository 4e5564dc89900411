"""One preview job: after a model's analysis is DONE, make its web previews.

Runs on the job engine (runtime/jobs.py) as its own task, enqueued by the
analysis job once DONE is recorded: the analysis never waits for it and never
fails because of it. The file is fetched and decrypted in memory, the previews
are made in a confined child (`domain.previews.sandbox`), and both are sealed
under the model's own data key (a fresh nonce prefix per object; the object key
`previews/<model>/<kind>-<random>` is the associated data, so a GLB cannot be
swapped for a PNG or for another model's) before they reach the store. The
`ModelPreview` row, written last, is what makes them visible; a model without
previews has `reason` set, and `Model.preview` is null.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, Subquery

from domain.analysis.options import AnalysisOptions
from domain.analysis_job import is_transient
from domain.enums import AnalysisStatus
from domain.previews import PreviewError, Previews
from domain.previews.sandbox import run_previews
from runtime.settings import Settings
from storage.crypto import KeyRing, WrappedKey, decrypt_stream, encrypt_bytes, unwrap
from storage.models import Model3D, ModelMetadata, ModelPreview
from storage.objects import ObjectStore

log = logging.getLogger("printvault.previews")

PREFIX = "previews/"
INTERNAL_REASON = "The preview could not be made."


class PreviewOutcome(StrEnum):
    READY = "ready"
    FAILED = "failed"  # a row with the reason, Model.preview null
    DROPPED = "dropped"  # not analysed, already has one, or deleted meanwhile


def object_key(model_id: UUID, kind: str) -> str:
    return f"{PREFIX}{model_id.hex}/{kind}-{secrets.token_hex(8)}"


class PreviewJob:
    def __init__(self, settings: Settings, store: ObjectStore, keyring: KeyRing) -> None:
        self.settings, self.store, self.keyring = settings, store, keyring

    async def run(self, model_id: UUID) -> PreviewOutcome:
        model = await Model3D.get_or_none(id=model_id)
        if model is None or model.analysis_status != AnalysisStatus.DONE:
            return PreviewOutcome.DROPPED
        if await ModelPreview.exists(model_id=model_id):
            return PreviewOutcome.DROPPED
        try:
            previews = await self._make(model)
        except PreviewError as error:
            return await self._record_failed(model, error.reason)
        except Exception as error:
            if is_transient(error):  # store or database down: no row, the sweep retries
                log.warning("model %s: preview postponed (%s)", model.id, error)
                return PreviewOutcome.DROPPED
            # A missing object, a bug: logged, shown as a plain reason.
            log.error("model %s: preview failed", model.id, exc_info=error)
            return await self._record_failed(model, INTERNAL_REASON)
        return await self._store(model, previews)

    async def _make(self, model: Model3D) -> Previews:
        data = await fetch_plaintext(self.store, self.keyring, model)
        return await asyncio.to_thread(
            run_previews,
            data,
            model.format,
            AnalysisOptions.from_settings(self.settings),
            float(self.settings.preview_timeout_seconds),
            self.settings.analysis_memory_bytes,
        )

    async def _store(self, model: Model3D, previews: Previews) -> PreviewOutcome:
        data_key = unwrap(self.keyring, WrappedKey.from_str(model.wrapped_key))
        keys = {"glb": object_key(model.id, "glb"), "png": object_key(model.id, "png")}
        blobs = {"glb": previews.glb, "png": previews.png}
        try:
            for kind, key in keys.items():
                sealed = encrypt_bytes(blobs[kind], data_key, key.encode())
                await self.store.put(key, _once(sealed))
            await ModelPreview.create(
                model_id=model.id,
                glb_key=keys["glb"],
                png_key=keys["png"],
                glb_size=len(previews.glb),
                png_size=len(previews.png),
                triangles=previews.triangles,
            )
        except IntegrityError:  # deleted meanwhile, or a concurrent job won
            await self._discard(keys.values())
            return PreviewOutcome.DROPPED
        except Exception as error:
            await self._discard(keys.values())
            if is_transient(error):
                log.warning("model %s: previews not stored (%s); postponed", model.id, error)
                return PreviewOutcome.DROPPED
            log.error("model %s: previews not stored", model.id, exc_info=error)
            return await self._record_failed(model, INTERNAL_REASON)
        if not await Model3D.exists(id=model.id):
            # Deleted between the checks (a database that does not enforce the foreign
            # key would keep the row): nothing may outlive the model.
            await ModelPreview.filter(model_id=model.id).delete()
            await self._discard(keys.values())
            return PreviewOutcome.DROPPED
        log.info("model %s: previews ready (%d triangles)", model.id, previews.triangles)
        return PreviewOutcome.READY

    async def _record_failed(self, model: Model3D, reason: str) -> PreviewOutcome:
        try:
            await ModelPreview.create(model_id=model.id, reason=reason)
        except IntegrityError:
            return PreviewOutcome.DROPPED
        log.info("model %s: no preview: %s", model.id, reason)
        return PreviewOutcome.FAILED

    async def _discard(self, keys) -> None:
        for key in keys:
            try:
                await self.store.delete(key)
            except Exception:  # the orphan sweep removes what is left
                log.warning("preview object not deleted; left for the clean-up job")


async def fetch_plaintext(store: ObjectStore, ring: KeyRing, model: Model3D) -> bytearray:
    """The decrypted original, in memory only (one buffer of its known size)."""
    data_key = unwrap(ring, WrappedKey.from_str(model.wrapped_key))
    plain = decrypt_stream(store.get(model.object_key), data_key, model.object_key.encode())
    buffer = bytearray()
    async for segment in plain:
        buffer += segment
        if len(buffer) > model.file_size:
            raise PreviewError("The stored file is larger than when it was uploaded.")
    return buffer


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def preview_keys() -> set[str]:
    """Every stored preview object (for the orphan sweep)."""
    rows = await ModelPreview.filter(glb_key__isnull=False).values_list("glb_key", "png_key")
    return {str(key) for row in rows for key in row if key}


async def without_preview(now: datetime, lease_s: float, limit: int) -> list[UUID]:
    """Models analysed more than `lease_s` ago that have no preview row: their job
    was lost (or they were analysed before previews existed)."""
    cutoff = now - timedelta(seconds=lease_s)
    done = ModelMetadata.filter(analysed_at__lt=cutoff, model__analysis_status=AnalysisStatus.DONE)
    have = Subquery(ModelPreview.all().values("model_id"))
    rows = await done.filter(~Q(model_id__in=have)).limit(limit).values_list("model_id", flat=True)
    return [UUID(str(row)) for row in rows]
