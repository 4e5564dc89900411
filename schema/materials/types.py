"""Material and quote types: Material, Process, QuoteLine, Quote and the inputs."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias
from uuid import UUID

import strawberry
from strawberry.types import Info

from domain.materials import Material, Process
from domain.policy import Subject
from domain.pricing import Price
from domain.quoting import subject_of
from schema.fields import guarded
from schema.models.types import DimensionsType, ModelType, PrintabilityIssueType
from storage.models import Material as MaterialRow
from storage.models import Model3D, Quote

strawberry.enum(Process, name="Process")  # registers the class itself
ProcessEnum: TypeAlias = Process


def _money(value: Decimal) -> float:
    # Exact Decimals inside; the contract's Float only at the edge (2 decimals survive).
    return float(value)


@strawberry.type(name="Material", description="A material of the catalogue (prices per cm³).")
class MaterialType:
    id: strawberry.ID = guarded()
    code: str = guarded()
    name: str = guarded()
    process: ProcessEnum = guarded()
    active: bool = guarded()
    min_wall_mm: float = guarded(description="Thinner walls make a model NOT_PRINTABLE in it.")
    build_volume: DimensionsType = guarded(description="mm; a model must fit in some orientation.")
    price_per_cm3: float = guarded(description="Per cm³ of the part's own volume.")
    machine_price_per_cm3: float = guarded(description="Per cm³ of its bounding box.")
    setup_fee: float = guarded(description="Once per quote or order.")
    min_price: float = guarded(description="The least a quote's total can be.")
    currency: str = guarded()

    @classmethod
    def of(cls, material_id: UUID | str, material: Material) -> MaterialType:
        x, y, z = material.build_volume_mm
        return cls(
            id=strawberry.ID(str(material_id)),
            code=material.code,
            name=material.name,
            process=material.process,
            active=material.active,
            min_wall_mm=float(material.min_wall_mm),
            build_volume=DimensionsType(x=x, y=y, z=z),
            price_per_cm3=_money(material.price_per_cm3),
            machine_price_per_cm3=_money(material.machine_price_per_cm3),
            setup_fee=_money(material.setup_fee),
            min_price=_money(material.min_price),
            currency=material.currency,
        )

    @classmethod
    def of_row(cls, row: MaterialRow) -> MaterialType:
        return cls.of(row.id, Material.from_dict(row.spec))


@strawberry.type(name="QuoteLine", description="One term of the price; the lines sum to total.")
class QuoteLineType:
    label: str = guarded()
    amount: float = guarded()


@strawberry.type(name="Quote", description="A frozen price and verdict for a model in a material.")
class QuoteType:
    row: strawberry.Private[Quote]

    def policy_subject(self) -> Subject:
        return subject_of(self.row)

    def _price(self) -> Price:
        return Price.from_dict(self.row.snapshot["price"])

    @guarded()
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    @guarded()
    async def model(self, info: Info) -> ModelType:
        # Quotes go with their model (deleted with it), so the model exists.
        row = await info.context.loaders.model.load(self.row.model_id)
        return ModelType(row=row or await Model3D.get(id=self.row.model_id))

    @guarded(description="The material as it was when quoted (later changes do not apply).")
    async def material(self) -> MaterialType:
        frozen = Material.from_dict(self.row.snapshot["material"])
        row = await MaterialRow.get_or_none(code=self.row.material_code)
        return MaterialType.of(row.id if row else self.row.material_code, frozen)

    @guarded()
    def quantity(self) -> int:
        return int(self.row.snapshot["quantity"])

    @guarded()
    def unit_price(self) -> float:
        return _money(self._price().unit_price)

    @guarded()
    def total(self) -> float:
        return _money(self._price().total)

    @guarded()
    def currency(self) -> str:
        return self._price().currency

    @guarded(description="The price's terms, each rounded to the cent; they sum to total.")
    def breakdown(self) -> list[QuoteLineType]:
        return [
            QuoteLineType(label=line.label, amount=_money(line.amount))
            for line in self._price().lines
        ]

    @guarded(description="False: an order from this quote is refused (NOT_PRINTABLE).")
    def printable(self) -> bool:
        return bool(self.row.snapshot["printable"])

    @guarded(description="The checks against this material, errors first.")
    def issues(self) -> list[PrintabilityIssueType]:
        return [PrintabilityIssueType(**issue) for issue in self.row.snapshot["issues"]]

    @guarded(description="Not estimated yet (no slicer run): always null for now.")
    def estimated_print_hours(self) -> float | None:
        return None

    @guarded()
    def lead_time_days(self) -> int:
        return int(self.row.snapshot["lead_time_days"])

    @guarded()
    def created_at(self) -> datetime:
        return self.row.created_at

    @guarded()
    def expires_at(self) -> datetime:
        return self.row.expires_at


@strawberry.input(name="DimensionsInput")
class DimensionsInput:
    x: float
    y: float
    z: float


@strawberry.input(name="MaterialInput")
class MaterialInput:
    code: str
    name: str
    process: ProcessEnum
    min_wall_mm: float
    build_volume: DimensionsInput
    price_per_cm3: float
    machine_price_per_cm3: float
    setup_fee: float
    min_price: float
    active: bool | None = True  # the contract's `Boolean = true`; null means the default
    currency: str = "EUR"

    def to_dict(self) -> dict[str, Any]:
        """The camelCase mapping domain.materials.material_from_input reads."""
        volume = self.build_volume
        return {
            "code": self.code,
            "name": self.name,
            "process": self.process,
            "active": True if self.active is None else self.active,
            "minWallMm": self.min_wall_mm,
            "buildVolume": {"x": volume.x, "y": volume.y, "z": volume.z},
            "pricePerCm3": self.price_per_cm3,
            "machinePricePerCm3": self.machine_price_per_cm3,
            "setupFee": self.setup_fee,
            "minPrice": self.min_price,
            "currency": self.currency,
        }
