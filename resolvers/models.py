"""Resolvers of model operations: uploads, listing, comments, downloads, deletion."""

from __future__ import annotations

from strawberry.types import Info

from domain import comments, downloads, model_files
from domain.errors import BadUserInput, NotFound
from domain.uploads import StoredUpload
from schema.connections import Connection, connection_from_page
from schema.model_types import CommentType, DownloadLinkType, ModelType


async def model(info: Info, model_id: str) -> ModelType | None:
    """Null for models that do not exist or that the caller may not reach: ids cannot be probed."""
    try:
        row = await model_files.find_model(info.context.access, model_id)
    except NotFound:
        return None
    return ModelType(row=row)


async def models(info: Info, first: int | None, after: str | None) -> Connection[ModelType]:
    page = await model_files.list_models(info.context.access, first, after)
    return connection_from_page(page, lambda row: ModelType(row=row))


async def upload_model(info: Info, file: object, name: str | None) -> ModelType:
    ctx = info.context
    if not isinstance(file, StoredUpload):
        # The Upload scalar only ever carries files streamed by schema/multipart.py.
        raise BadUserInput("Send the file as a GraphQL multipart request.", field="file")
    row = await model_files.create_model(ctx.access, file, name, ctx.ip)
    await ctx.services.jobs.enqueue_analysis(row.id)
    return ModelType(row=row)


async def delete_model(info: Info, model_id: str) -> bool:
    ctx = info.context
    await model_files.delete_model(ctx.access, ctx.services.store, model_id, ctx.ip)
    return True


async def add_comment(info: Info, model_id: str, body: str) -> CommentType:
    ctx = info.context
    row = await comments.add_comment(ctx.access, model_id, body, ctx.ip)
    company_id = (await model_files.find_model(ctx.access, model_id)).company_id
    return CommentType(row=row, model_company_id=company_id)


async def request_download(info: Info, model_id: str) -> DownloadLinkType:
    ctx = info.context
    link = await downloads.request_download(ctx.settings, ctx.access, model_id, ctx.ip)
    return DownloadLinkType(url=link.url, expires_at=link.expires_at)
