"""The published price formula of a quote (docs/pricing.md has a worked example).

For a part of volume V cm³ whose bounding box holds B cm³, in quantity q:

    unit      = V * pricePerCm3 + B * machinePricePerCm3      (variable cost of one part)
    units     = E(q): q weighted by the marginal quantity discount (DISCOUNT_TIERS)
    subtotal  = setupFee + unit * E(q)
    total     = max(minPrice, subtotal), rounded half-up to the cent

The discount is marginal, like tax brackets: the 10th to 49th parts cost 90%,
and so on, so each extra part still adds at least 70% of its cost and a larger
order never costs less in total. Every step is monotone non-decreasing in V,
B and q, and rounding the total once is monotone too, so the total never drops
when volume, box or quantity grows.

The breakdown shows each term rounded to the cent; a "Rounding" line (at
most a few cents, only when non-zero) carries the difference, so the lines
sum exactly to the total. Everything is Decimal: no binary fraction ever
reaches a price.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any

from .errors import BadUserInput
from .materials import Material, Process

CENT = Decimal("0.01")
# A fixed context: prices must not depend on whatever another module set.
CONTEXT = Context(prec=40, rounding=ROUND_HALF_EVEN)
MM3_PER_CM3 = Decimal(1000)
MAX_QUANTITY = 10_000
# A part beyond 10 m on a side is no part (the largest build volume is 10 m).
MAX_SIDE_MM = 10_000.0

# (first unit of the tier, share of the unit cost paid for units from it on)
DISCOUNT_TIERS: tuple[tuple[int, Decimal], ...] = (
    (1, Decimal("1.00")),
    (10, Decimal("0.90")),
    (50, Decimal("0.80")),
    (250, Decimal("0.70")),
)

# Working days before shipping: a base per process, plus one day per started
# batch of this many parts beyond the first batch.
LEAD_DAYS: dict[Process, int] = {Process.FDM: 3, Process.SLA: 4, Process.SLS: 6, Process.MJF: 5}
LEAD_BATCH = 50


@dataclass(frozen=True)
class PriceLine:
    label: str
    amount: Decimal


@dataclass(frozen=True)
class Price:
    quantity: int
    currency: str
    lines: tuple[PriceLine, ...]  # they sum exactly to total
    total: Decimal
    unit_price: Decimal  # total / quantity, rounded to the cent (informative)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready with decimals as strings: how a quote freezes its price."""
        return {
            "quantity": self.quantity,
            "currency": self.currency,
            "lines": [[line.label, str(line.amount)] for line in self.lines],
            "total": str(self.total),
            "unit_price": str(self.unit_price),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Price:
        return cls(
            quantity=int(values["quantity"]),
            currency=str(values["currency"]),
            lines=tuple(
                PriceLine(str(label), Decimal(amount)) for label, amount in values["lines"]
            ),
            total=Decimal(values["total"]),
            unit_price=Decimal(values["unit_price"]),
        )


def check_quantity(quantity: Any) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise BadUserInput("quantity must be a whole number.", field="quantity")
    if not 1 <= quantity <= MAX_QUANTITY:
        raise BadUserInput(f"quantity must be 1 to {MAX_QUANTITY}.", field="quantity")
    return quantity


def price(
    material: Material,
    volume_mm3: float,
    box_mm: tuple[float, float, float],
    quantity: int,
) -> Price:
    """The price of `quantity` parts of `volume_mm3` with bounding box `box_mm`.

    `box_mm` is the machine space one part takes: `fit.machine_box` of the
    model's hull summary (the same whatever orientation the file was exported
    in), or ModelMetadata.dimensions for an analysis without a hull.
    Deterministic: same inputs, same Price.
    """
    quantity = check_quantity(quantity)
    if len(box_mm) != 3:
        raise BadUserInput("dimensions need x, y and z.", field="dimensions")
    with localcontext(CONTEXT):
        return _price(material, volume_mm3, box_mm, quantity)


def _price(
    material: Material, volume_mm3: float, box_mm: tuple[float, float, float], quantity: int
) -> Price:
    volume = _cm3(_measure(volume_mm3, "volume", MAX_SIDE_MM**3))
    x, y, z = (_measure(side, "dimensions", MAX_SIDE_MM) for side in box_mm)
    box = _cm3(x * y * z)
    units = discounted_units(quantity)
    material_cost = volume * material.price_per_cm3
    machine_cost = box * material.machine_price_per_cm3
    discount = (material_cost + machine_cost) * (units - quantity)  # <= 0
    subtotal = material.setup_fee + (material_cost + machine_cost) * units
    top_up = max(material.min_price - subtotal, Decimal(0))
    total = _cents(subtotal + top_up)
    c = material.currency
    lines = [
        PriceLine(
            f"Material: {volume} cm³ x {material.price_per_cm3} {c}/cm³ x {quantity}",
            _cents(material_cost * quantity),
        ),
        PriceLine(
            f"Machine space: {box} cm³ x {material.machine_price_per_cm3} {c}/cm³ x {quantity}",
            _cents(machine_cost * quantity),
        ),
    ]
    if discount:
        lines.append(PriceLine(f"Quantity discount ({_tiers_text(quantity)})", _cents(discount)))
    lines.append(PriceLine("Setup fee (once per order)", _cents(material.setup_fee)))
    if top_up:
        lines.append(PriceLine(f"Minimum order top-up to {material.min_price} {c}", _cents(top_up)))
    rest = total - sum((line.amount for line in lines), Decimal(0))
    if rest:
        lines.append(PriceLine("Rounding", rest))
    return Price(
        quantity=quantity,
        currency=c,
        lines=tuple(lines),
        total=total,
        unit_price=_cents(total / quantity),
    )


def discounted_units(quantity: int) -> Decimal:
    """E(q): the number of full-price parts q parts cost (marginal tiers)."""
    units = Decimal(0)
    for index, (first, share) in enumerate(DISCOUNT_TIERS):
        end = DISCOUNT_TIERS[index + 1][0] if index + 1 < len(DISCOUNT_TIERS) else quantity + 1
        count = max(0, min(quantity + 1, end) - first)
        units += share * count
    return units


def lead_time_days(material: Material, quantity: int) -> int:
    extra_batches = (check_quantity(quantity) - 1) // LEAD_BATCH
    return LEAD_DAYS[material.process] + extra_batches


def _measure(value: Any, field: str, ceiling: float) -> Decimal:
    """A positive, finite measurement as an exact Decimal (its binary value)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadUserInput(f"{field} must be a number.", field=field)
    if not math.isfinite(value) or value <= 0 or value > ceiling:
        raise BadUserInput(
            f"{field} must be positive, finite and at most {ceiling:g}.", field=field
        )
    return Decimal(value)


def _cm3(mm3: Decimal) -> Decimal:
    # Whole mm³ (0.001 cm³): readable labels. Rounding is monotone, so the
    # price still never drops when the volume grows.
    return (mm3 / MM3_PER_CM3).quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _tiers_text(quantity: int) -> str:
    parts = []
    for index, (first, share) in enumerate(DISCOUNT_TIERS):
        if share == 1 or first > quantity:
            continue
        end = DISCOUNT_TIERS[index + 1][0] - 1 if index + 1 < len(DISCOUNT_TIERS) else None
        last = quantity if end is None else min(end, quantity)
        off = int((1 - share) * 100)
        which = f"part {first}" if first == last else f"parts {first}-{last}"
        parts.append(f"{which}: {off}% off")
    return ", ".join(parts)
