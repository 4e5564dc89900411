"""The materials catalogue as stored: seeding, listing, staff edits, providers' offers.

Values are validated by domain/materials.py (`material_from_input`) before any
write; a row's `spec` is `Material.to_dict()`, exact decimals as strings.

Seeding: on start-up, a database whose catalogue is empty gets SEED_MATERIALS
and, inactive, the legacy code `PA12` that orders named before materials were
data (PA12 now comes in two processes, PA12_SLS and PA12_MJF). Old orders keep
their code and stay readable; new orders cannot name `PA12`. Staff edits are never
overwritten: seeding only ever fills an empty table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

from tortoise.transactions import in_transaction

from domain import audit, policy
from domain.enums import CompanyKind
from domain.errors import BadUserInput, NotFound
from domain.ids import parse_id
from domain.materials import SEED_MATERIALS, Material, material_from_input
from domain.policy import Viewer
from storage.models import Company, ProviderMaterial
from storage.models import Material as MaterialRow

# The code orders used for PA12 before the catalogue existed; kept, inactive.
LEGACY_PA12 = replace(
    next(m for m in SEED_MATERIALS if m.code == "PA12_SLS"),
    code="PA12",
    name="PA12 nylon (legacy code; now PA12_SLS or PA12_MJF)",
    active=False,
)
MAX_PROVIDER_MATERIALS = 200


def seed_materials() -> tuple[Material, ...]:
    return (*SEED_MATERIALS, LEGACY_PA12)


async def ensure_seeded() -> int:
    """Fill an empty catalogue; returns how many materials were inserted (0 if any existed).

    Idempotent and safe with several processes starting at once: the unique code
    makes a concurrent second insert a no-op."""
    if await MaterialRow.exists():
        return 0
    rows = [MaterialRow(code=m.code, active=m.active, spec=m.to_dict()) for m in seed_materials()]
    await MaterialRow.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def material_of(row: MaterialRow) -> Material:
    return Material.from_dict(row.spec)


async def catalogue() -> dict[str, Material]:
    """Every material by code, active or not."""
    return {row.code: material_of(row) for row in await MaterialRow.all()}


async def list_materials(viewer: Viewer, include_inactive: bool) -> list[MaterialRow]:
    """Active materials for every signed-in user; inactive ones too for those who keep
    the catalogue (the policy's rule of upsertMaterial: staff), FORBIDDEN otherwise."""
    query = MaterialRow.all().order_by("code")
    if include_inactive:
        policy.attempt("Mutation.upsertMaterial", viewer)
    else:
        query = query.filter(active=True)
    return list(await query)


async def upsert_material(viewer: Viewer, values: Mapping[str, Any], ip: str | None) -> MaterialRow:
    """Create the material named by `code`, or replace its values (staff).

    Quotes already made keep their frozen copy; only new quotes see the change."""
    material = material_from_input(values)
    async with in_transaction():
        row = await MaterialRow.get_or_none(code=material.code)
        if row is None:
            row = await MaterialRow.create(
                code=material.code, active=material.active, spec=material.to_dict()
            )
            change = "created"
        else:
            row.active, row.spec = material.active, material.to_dict()
            await row.save(update_fields=["active", "spec", "updated_at"])
            change = "updated"
        await audit.record("material." + change, actor_id=viewer.user_id, ip=ip, code=material.code)
    return row


async def set_provider_materials(
    viewer: Viewer, company_id: object, codes: Sequence[Any], ip: str | None
) -> Company:
    """Replace what a print service offers (staff). Unknown or inactive codes are
    refused, listing the valid ones; nothing is written then."""
    company = await Company.get_or_none(id=parse_id(company_id, "Company"))
    if company is None:
        raise NotFound("Company not found.")
    if company.kind != CompanyKind.PRINT_SERVICE:
        raise BadUserInput("Only a print service offers materials.", field="companyId")
    if len(codes) > MAX_PROVIDER_MATERIALS:
        raise BadUserInput("Too many material codes.", field="materialCodes")
    active = {row.code: row for row in await MaterialRow.filter(active=True)}
    wanted = set()
    for code in codes:
        if not isinstance(code, str) or code not in active:
            valid = sorted(active)
            raise BadUserInput(
                f"materialCodes must be among: {', '.join(valid)}.",
                field="materialCodes",
                valid=valid,
            )
        wanted.add(code)
    async with in_transaction():
        await ProviderMaterial.filter(company_id=company.id).delete()
        await ProviderMaterial.bulk_create(
            [ProviderMaterial(company_id=company.id, material_id=active[c].id) for c in wanted]
        )
        await audit.record(
            "provider.materials_set",
            actor_id=viewer.user_id,
            company_id=company.id,
            ip=ip,
            codes=sorted(wanted),
        )
    return company


async def materials_of(company_id: UUID) -> list[MaterialRow]:
    """What a company offers (empty for customer companies), by code."""
    ids = ProviderMaterial.filter(company_id=company_id).values_list("material_id", flat=True)
    return list(await MaterialRow.filter(id__in=await ids).order_by("code"))


async def offers(company_id: UUID, code: str) -> bool:
    return await ProviderMaterial.filter(company_id=company_id, material__code=code).exists()
