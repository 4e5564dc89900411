"""Model queries and mutations: uploads, listing, comments, downloads, deletion."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types import Info
from strawberry.types.nodes import SelectedField

from domain import comments, downloads, model_files
from domain.enums import AnalysisStatus
from domain.errors import BadUserInput
from domain.ids import uuid_or_nil
from domain.lookups import or_none
from domain.pagination import DEFAULT_PAGE
from domain.uploads import StoredUpload
from runtime.push import model_topic
from schema.connections import Connection, connection_from_page
from schema.fields import guarded, guarded_subscription
from schema.live import events_on
from schema.models.types import CommentType, DownloadLinkType, ModelType


@strawberry.type
class Query:
    @guarded()
    async def model(self, info: Info, id: strawberry.ID) -> ModelType | None:
        # Null for models that do not exist or are out of reach: ids cannot be probed.
        row = await or_none(model_files.find_model(info.context.access, id))
        return ModelType(row=row) if row else None

    @guarded(description="The models the caller may see, newest first.")
    async def models(
        self, info: Info, first: int | None = DEFAULT_PAGE, after: str | None = None
    ) -> Connection[ModelType]:
        page = await model_files.list_models(info.context.access, first, after)
        # The page's metadata in one batch now, so each model's field answers at once.
        done = [row.id for row in page.items if row.analysis_status == AnalysisStatus.DONE]
        if done and _selects_metadata(info):
            await info.context.loaders.metadata.load_many(done)
        return connection_from_page(page, lambda row: ModelType(row=row))


@strawberry.type
class Mutation:
    @guarded(description="Multipart request only; the file is checked and encrypted as it arrives.")
    async def upload_model(self, info: Info, file: Upload, name: str | None = None) -> ModelType:
        ctx = info.context
        if not isinstance(file, StoredUpload):
            # The Upload scalar only ever carries files streamed by web/multipart.py.
            raise BadUserInput("Send the file as a GraphQL multipart request.", field="file")
        row = await model_files.create_model(ctx.access, file, name, ctx.ip)
        await ctx.services.jobs.enqueue_analysis(row.id, early=file.early)
        return ModelType(row=row)

    @guarded()
    async def delete_model(self, info: Info, id: strawberry.ID) -> bool:
        ctx = info.context
        await model_files.delete_model(ctx.access, ctx.services.store, id, ctx.ip)
        return True

    @guarded()
    async def add_comment(self, info: Info, model_id: strawberry.ID, body: str) -> CommentType:
        ctx = info.context
        row = await comments.add_comment(ctx.access, model_id, body, ctx.ip)
        company_id = (await model_files.find_model(ctx.access, model_id)).company_id
        if ctx.push is not None:
            await ctx.push.comment_added(row, company_id)
        return CommentType(row=row, model_company_id=company_id)

    @guarded(description="A short-lived link to /files/<token>; each link and download is audited.")
    async def request_download(self, info: Info, model_id: strawberry.ID) -> DownloadLinkType:
        ctx = info.context
        link = await downloads.request_download(ctx.settings, ctx.access, model_id, ctx.ip)
        return DownloadLinkType(url=link.url, expires_at=link.expires_at)


def _selects_metadata(info: Info) -> bool:
    """Whether the page asks for `edges { node { metadata } }` (fragments included)."""
    level = list(info.selected_fields)
    for name in ("edges", "node", "metadata"):
        level = [child for field in level for child in _named(field.selections, name)]
        if not level:
            return False
    return True


def _named(selections: list[Any], name: str) -> list[Any]:
    found = []
    for selection in selections:
        if isinstance(selection, SelectedField):
            if selection.name == name:
                found.append(selection)
        else:  # an inline fragment or a fragment spread: look inside
            found.extend(_named(selection.selections, name))
    return found


@strawberry.type
class Subscription:
    @guarded_subscription(
        description="The model each time its analysis finishes (DONE or FAILED), and again "
        "when checks still pending at DONE (printability.pendingChecks) have finished. A "
        "model the caller does not reach yields nothing."
    )
    async def model_analysis(
        self, info: Info, model_id: strawberry.ID
    ) -> AsyncGenerator[ModelType, None]:
        ctx = info.context
        async for message in events_on(ctx, model_topic(uuid_or_nil(model_id))):
            row = await model_files.live_model(ctx.access, message)
            if row is not None:
                yield ModelType(row=row)
