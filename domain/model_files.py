"""3D models: creating one from a stored upload, finding, listing and deleting them."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from tortoise.transactions import in_transaction

from domain import audit
from domain.enums import AnalysisStatus
from domain.errors import BadUserInput, InvalidTransition
from domain.lookups import authorized, reachable
from domain.order_states import OrderStatus
from domain.pagination import Page, paginate
from domain.policy import Access, Subject, reach_filter
from domain.uploads import StoredUpload
from domain.validation import clean_name
from storage.models import Model3D, ModelPreview, Order
from storage.objects import ObjectStore

log = logging.getLogger("printvault.models")

# Orders that no longer need their model (API.md: deleteModel is refused otherwise).
CLOSED_STATUSES = (OrderStatus.DELIVERED, OrderStatus.DECLINED, OrderStatus.CANCELLED)


def subject_of(model: Model3D) -> Subject:
    return Subject("Model", model.id, company_id=model.company_id)


async def create_model(
    access: Access, upload: StoredUpload, name: str | None, ip: str | None
) -> Model3D:
    """The row for an upload that is already stored; the upload counts as claimed once
    the row exists, so the object is never deleted under a row that points to it."""
    viewer = access.viewer
    if upload.claimed:
        raise BadUserInput("One uploaded file makes one model; send the file again.", field="file")
    if viewer.company_id is None:
        raise BadUserInput("Staff upload on behalf of a company is not supported yet.")
    title = clean_name(name, "name", 200) if name and name.strip() else upload.file_name[:200]
    async with in_transaction():
        model = await Model3D.create(
            company_id=viewer.company_id,
            owner_id=viewer.user_id,
            name=title,
            file_name=upload.file_name,
            file_size=upload.size,
            format=upload.format,
            object_key=upload.object_key,
            wrapped_key=upload.wrapped_key,
            upload_ip=ip,
            analysis_status=AnalysisStatus.PENDING,
        )
        await audit.record(
            "model.uploaded",
            actor_id=viewer.user_id,
            company_id=viewer.company_id,
            model_id=model.id,
            ip=ip,
            size=upload.size,
            format=upload.format,
        )
    upload.claimed = True
    return model


async def find_model(access: Access, model_id: object) -> Model3D:
    return await reachable(access, Model3D, model_id, subject_of)


async def find_model_for(access: Access, key: str, model_id: object) -> Model3D:
    return await authorized(access, key, Model3D, model_id, subject_of)


async def list_models(access: Access, first: int | None, after: str | None) -> Page[Model3D]:
    return await paginate(Model3D.filter(reach_filter("Model", access.viewer)), first, after)


async def delete_model(
    access: Access, store: ObjectStore, model_id: object, ip: str | None
) -> None:
    model = await find_model_for(access, "Mutation.deleteModel", model_id)
    preview = await ModelPreview.get_or_none(model_id=model.id)
    async with in_transaction():
        # Checked inside the transaction that deletes: an order requested meanwhile
        # either sees no model or keeps it.
        if await Order.filter(model_id=model.id).exclude(status__in=CLOSED_STATUSES).exists():
            raise InvalidTransition(
                "The model has an open order; it can be deleted once every order of it "
                "is delivered, declined or cancelled.",
                reason="OPEN_ORDER",
            )
        await Model3D.filter(id=model.id).delete()
        await audit.record(
            "model.deleted",
            actor_id=access.viewer.user_id,
            company_id=model.company_id,
            model_id=model.id,
            ip=ip,
        )
    # After the commit: a failure here leaves an encrypted orphan for the clean-up
    # job, never a row pointing to a missing object.
    # Its previews went with the row (cascade); a preview job still running for it
    # finds no row to attach its objects to and removes them itself.
    keys = [model.object_key]
    if preview is not None:
        keys += [key for key in (preview.glb_key, preview.png_key) if key]
    for key in keys:
        try:
            await store.delete(key)
        except Exception:  # the row is gone; the orphan sweep will retry the object
            log.warning("model %s: object not deleted; left for the clean-up job", model.id)


async def live_model(access: Access, message: dict[str, Any]) -> Model3D | None:
    """The model an event-bus message names, if the caller may follow its analysis now."""
    try:
        model_id = UUID(str(message["modelId"]))
    except (KeyError, ValueError, TypeError):
        return None
    model = await Model3D.get_or_none(id=model_id)
    if model is None or not await access.may("Subscription.modelAnalysis", subject_of(model)):
        return None
    return model

