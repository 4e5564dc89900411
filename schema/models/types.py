"""Model types: Model, its metadata, comments and download links."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeAlias
from uuid import UUID

import strawberry
from strawberry.types import Info

from domain import comments as comment_rules
from domain import preview_links
from domain.enums import AnalysisStatus
from domain.model_files import subject_of
from domain.orders import subject_of as order_subject
from domain.pagination import DEFAULT_PAGE
from domain.policy import Subject
from schema.accounts.types import CompanyType, UserType
from schema.connections import Connection, connection_from_page
from schema.fields import from_row, guarded
from storage.models import Comment, Model3D, ModelMetadata

if TYPE_CHECKING:
    from schema.orders.types import OrderType

strawberry.enum(AnalysisStatus, name="AnalysisStatus")  # registers the class itself
AnalysisStatusEnum: TypeAlias = AnalysisStatus


@strawberry.type(name="Dimensions", description="Axis-aligned bounding box, millimetres.")
class DimensionsType:
    x: float = guarded()
    y: float = guarded()
    z: float = guarded()


@strawberry.type(name="PrintabilityIssue")
class PrintabilityIssueType:
    code: str = guarded()
    severity: str = guarded()
    message: str = guarded()


@strawberry.type(name="Printability")
class PrintabilityType:
    printable: bool = guarded()
    issues: list[PrintabilityIssueType] = guarded()
    pending_checks: list[str] = guarded(
        description="Checks still running after the analysis is DONE (THIN_WALLS): their "
        "issues are not listed yet and `printable` may still turn false. Empty when the "
        "verdict is complete; modelAnalysis yields the model again then."
    )


@strawberry.type(name="ModelMetadata")
class ModelMetadataType:
    row: strawberry.Private[ModelMetadata]

    file_name: str = from_row("file_name")
    file_size: int = from_row("file_size")
    format: str = from_row("format")

    @guarded()
    def dimensions(self) -> DimensionsType:
        return DimensionsType(x=self.row.size_x, y=self.row.size_y, z=self.row.size_z)

    @guarded(description="mm³. Not trustworthy unless isWatertight (see printability).")
    def volume(self) -> float:
        return self.row.volume

    @guarded(description="mm²")
    def surface_area(self) -> float:
        return self.row.surface_area

    triangle_count: int = from_row("triangle_count")
    body_count: int = from_row("body_count")
    is_watertight: bool = from_row("is_watertight")

    @guarded()
    def printability(self) -> PrintabilityType:
        issues = [PrintabilityIssueType(**issue) for issue in self.row.issues]
        pending = [check for check in self.row.pending_checks.split(",") if check]
        return PrintabilityType(
            printable=self.row.printable, issues=issues, pending_checks=pending
        )


def _metadata_type(row: ModelMetadata | None) -> ModelMetadataType | None:
    return ModelMetadataType(row=row) if row else None


async def _metadata_later(loaded: Awaitable[ModelMetadata | None]) -> ModelMetadataType | None:
    return _metadata_type(await loaded)


@strawberry.type(name="Comment")
class CommentType:
    row: strawberry.Private[Comment]
    model_company_id: strawberry.Private[UUID]

    def policy_subject(self) -> Subject:
        return Subject("Comment", self.row.id, company_id=self.model_company_id)

    @guarded()
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    @guarded()
    async def model(self, info: Info) -> ModelType:
        return ModelType(row=await Model3D.get(id=self.row.model_id))

    @guarded()
    async def author(self, info: Info) -> UserType:
        # People are anonymised, never deleted, so the author always exists.
        return UserType(row=await info.context.loaders.user.load(self.row.author_id))

    body: str = from_row("body")
    created_at: datetime = from_row("created_at")
    ip: str | None = from_row("ip")


@strawberry.type(name="Model")
class ModelType:
    row: strawberry.Private[Model3D]

    def policy_subject(self) -> Subject:
        return subject_of(self.row)

    @guarded()
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    name: str = from_row("name")
    file_name: str = from_row("file_name")
    # Nullable where a provider, who reaches the model, may not read (the nullability rule).
    created_at: datetime | None = from_row("created_at")

    @guarded()
    async def owner(self, info: Info) -> UserType | None:
        if self.row.owner_id is None:
            return None
        row = await info.context.loaders.user.load(self.row.owner_id)
        return UserType(row=row) if row else None

    @guarded()
    async def company(self, info: Info) -> CompanyType | None:
        return CompanyType(row=await info.context.loaders.company.load(self.row.company_id))

    @guarded()
    def analysis_status(self) -> AnalysisStatusEnum | None:
        return AnalysisStatus(self.row.analysis_status)

    analysis_error: str | None = from_row("analysis_error")

    @guarded(description="Null until analysisStatus is DONE.")
    def metadata(self, info: Info) -> ModelMetadataType | None:
        # Not `async`: a page loads its models' metadata at once (schema/models/
        # operations.py), and then this answers without a coroutine per model.
        if self.row.analysis_status != AnalysisStatus.DONE:
            return None
        loaded = info.context.loaders.metadata.load(self.row.id)
        if loaded.done():
            return _metadata_type(loaded.result())
        return _metadata_later(loaded)  # type: ignore[return-value]  # awaited by GraphQL

    @guarded()
    async def comments(
        self, info: Info, first: int | None = DEFAULT_PAGE, after: str | None = None
    ) -> Connection[CommentType] | None:
        page = await comment_rules.comments_of(self.row.id, first, after)
        company_id = self.row.company_id
        return connection_from_page(page, lambda c: CommentType(row=c, model_company_id=company_id))

    @guarded(description="The orders of this model that the caller may see, newest first.")
    async def orders(
        self, info: Info
    ) -> list[Annotated[OrderType, strawberry.lazy("schema.orders.types")]]:
        from schema.orders.types import OrderType  # a cycle: orders name their model

        rows = await info.context.loaders.orders_of_model.load(self.row.id)
        access = info.context.access
        return [OrderType(row=row) for row in rows if await access.can_reach(order_subject(row))]

    upload_ip: str | None = from_row("upload_ip")

    @guarded(
        description="Signed, short-lived links to a web preview (GLB) and a 512x512 PNG "
        "thumbnail; null until made, or when the model has none."
    )
    async def preview(self, info: Info) -> PreviewType | None:
        ctx = info.context
        links = await preview_links.preview_links(ctx.settings, ctx.access, self.row)
        if links is None:
            return None
        return PreviewType(
            glb_url=links.glb_url, png_url=links.png_url, expires_at=links.expires_at
        )


@strawberry.type(name="DownloadLink")
class DownloadLinkType:
    url: str = guarded()
    expires_at: datetime = guarded()


@strawberry.type(name="Preview")
class PreviewType:
    glb_url: str = guarded()
    png_url: str = guarded()
    expires_at: datetime = guarded()
