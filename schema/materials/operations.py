"""Material and quote queries and mutations (issue 9)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from domain import catalogue, quoting
from domain.lookups import or_none
from schema.accounts.types import CompanyType
from schema.fields import guarded
from schema.materials.types import MaterialInput, MaterialType, QuoteType


@strawberry.type
class Query:
    @guarded(description="The catalogue: active materials; with includeInactive, all (staff).")
    async def materials(
        self, info: Info, include_inactive: bool | None = False
    ) -> list[MaterialType]:
        rows = await catalogue.list_materials(info.context.viewer, bool(include_inactive))
        return [MaterialType.of_row(row) for row in rows]

    @guarded(description="Null when the quote does not exist or is not yours to see.")
    async def quote(self, info: Info, id: strawberry.ID) -> QuoteType | None:
        row = await or_none(quoting.find_quote(info.context.access, id))
        return QuoteType(row=row) if row else None


@strawberry.type
class Mutation:
    @guarded(description="Create a material, or replace the one with this code (staff).")
    async def upsert_material(self, info: Info, input: MaterialInput) -> MaterialType:
        ctx = info.context
        row = await catalogue.upsert_material(ctx.viewer, input.to_dict(), ctx.ip)
        return MaterialType.of_row(row)

    @guarded(description="Say which materials a print service offers (staff); replaces the list.")
    async def set_provider_materials(
        self, info: Info, company_id: strawberry.ID, material_codes: list[str]
    ) -> CompanyType:
        ctx = info.context
        company = await catalogue.set_provider_materials(
            ctx.viewer, company_id, material_codes, ctx.ip
        )
        return CompanyType(row=company)

    @guarded(description="Price and judge one of your company's models in a material (14 days).")
    async def create_quote(
        self, info: Info, model_id: strawberry.ID, material_code: str, quantity: int
    ) -> QuoteType:
        ctx = info.context
        services = ctx.services
        row = await quoting.create_quote(
            ctx.access,
            services.keyring,
            model_id,
            material_code,
            quantity,
            ctx.ip,
            reanalyse=services.jobs.enqueue_analysis,
        )
        return QuoteType(row=row)
