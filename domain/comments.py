"""Comments on a model: for those who may see the model, with the author's IP kept."""

from __future__ import annotations

from uuid import UUID

from tortoise.transactions import in_transaction

from domain import audit
from domain.model_files import find_model_for
from domain.pagination import Page, paginate
from domain.policy import Access
from domain.validation import clean_text
from storage.models import Comment

MAX_BODY = 10_000


async def add_comment(access: Access, model_id: object, body: str, ip: str | None) -> Comment:
    model = await find_model_for(access, "Mutation.addComment", model_id)
    # Stored as plain text; clients render it as text, never as HTML.
    text = clean_text(body, "body", max_length=MAX_BODY)
    async with in_transaction():
        comment = await Comment.create(
            model_id=model.id, author_id=access.viewer.user_id, body=text, ip=ip
        )
        await audit.record(
            "comment.added",
            actor_id=access.viewer.user_id,
            company_id=model.company_id,
            model_id=model.id,
            ip=ip,
        )
    return comment


async def comments_of(model_id: UUID, first: int | None, after: str | None) -> Page[Comment]:
    """The caller's right to see them is checked on `Model.comments` itself."""
    return await paginate(Comment.filter(model_id=model_id), first, after)
