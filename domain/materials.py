"""Materials: what a part can be made of, on which process, at what price.

A `Material` is a value checked once, when it is built: every price is a
finite, non-negative Decimal with a bounded number of places, below a sane
ceiling; sizes are positive and bounded. Storage rows and staff input
(`upsertMaterial`) both go through `material_from_input`, so a bad value is
refused with `BAD_USER_INPUT` naming the API field, before anything is written.

The seeded catalogue (`SEED_MATERIALS`) is data; `docs/pricing.md` explains it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from .errors import BadUserInput


class Process(StrEnum):
    FDM = "FDM"  # fused deposition (filament)
    SLA = "SLA"  # stereolithography (resin)
    SLS = "SLS"  # selective laser sintering (powder)
    MJF = "MJF"  # HP Multi Jet Fusion (powder)


CODE_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9_-]{1,31}")
NAME_MAX = 80
# The analysis measures walls up to this thickness (manufacturability.WALL_PROBE_MM),
# so no material may ask for thicker ones.
MAX_MIN_WALL_MM = Decimal("5")
# Currencies priced in cents (two minor units, ISO 4217).
CURRENCIES = frozenset({"EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "CAD"})


@dataclass(frozen=True)
class _Bound:
    """Limits of one numeric field; `api` is its name in the GraphQL input."""

    api: str
    low: Decimal
    high: Decimal
    places: int  # decimal places kept; more are refused, never rounded away
    low_open: bool = False  # True: the low end itself is refused


# Rules as data, one line per field. Ceilings are far above any real offer
# (metal printing is ~5 EUR/cm³) and far below what would overflow a sum.
BOUNDS: dict[str, _Bound] = {
    "min_wall_mm": _Bound("minWallMm", Decimal("0"), MAX_MIN_WALL_MM, 3, low_open=True),
    "build_x": _Bound("buildVolume.x", Decimal("0"), Decimal("10000"), 3, low_open=True),
    "build_y": _Bound("buildVolume.y", Decimal("0"), Decimal("10000"), 3, low_open=True),
    "build_z": _Bound("buildVolume.z", Decimal("0"), Decimal("10000"), 3, low_open=True),
    # A material priced at zero per cm³ is a typing error (the price would not
    # grow with the part); a zero setup fee, machine rate or minimum is a real offer.
    "price_per_cm3": _Bound("pricePerCm3", Decimal("0"), Decimal("1000"), 4, low_open=True),
    "machine_price_per_cm3": _Bound("machinePricePerCm3", Decimal("0"), Decimal("100"), 4),
    "setup_fee": _Bound("setupFee", Decimal("0"), Decimal("100000"), 2),
    "min_price": _Bound("minPrice", Decimal("0"), Decimal("100000"), 2),
}


@dataclass(frozen=True)
class Material:
    code: str
    name: str
    process: Process
    min_wall_mm: Decimal
    build_volume: tuple[Decimal, Decimal, Decimal]  # x, y, z in mm
    price_per_cm3: Decimal  # of the part's own volume
    machine_price_per_cm3: Decimal  # of its bounding box (machine space taken)
    setup_fee: Decimal  # once per quote
    min_price: Decimal  # of a quote's total
    currency: str = "EUR"
    active: bool = True

    def __post_init__(self) -> None:
        # Constructed directly (seed data, tests) or via material_from_input:
        # either way nothing invalid exists.
        _check_code(self.code)
        _check_name(self.name)
        if not isinstance(self.process, Process):
            raise BadUserInput("process must be one of FDM, SLA, SLS, MJF.", field="process")
        if self.currency not in CURRENCIES:
            raise BadUserInput(
                f"currency must be one of {', '.join(sorted(CURRENCIES))}.", field="currency"
            )
        if len(self.build_volume) != 3:
            raise BadUserInput("buildVolume needs x, y and z.", field="buildVolume")
        for key, value in self._numbers().items():
            _check_decimal(key, value)

    def _numbers(self) -> dict[str, Decimal]:
        x, y, z = self.build_volume
        return {
            "min_wall_mm": self.min_wall_mm,
            "build_x": x,
            "build_y": y,
            "build_z": z,
            "price_per_cm3": self.price_per_cm3,
            "machine_price_per_cm3": self.machine_price_per_cm3,
            "setup_fee": self.setup_fee,
            "min_price": self.min_price,
        }

    @property
    def build_volume_mm(self) -> tuple[float, float, float]:
        """The box as floats, for geometry (manufacturability)."""
        x, y, z = self.build_volume
        return (float(x), float(y), float(z))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values with exact decimals as strings (storage, frozen quotes)."""
        return {
            "code": self.code,
            "name": self.name,
            "process": self.process.value,
            "active": self.active,
            "min_wall_mm": str(self.min_wall_mm),
            "build_volume": [str(v) for v in self.build_volume],
            "price_per_cm3": str(self.price_per_cm3),
            "machine_price_per_cm3": str(self.machine_price_per_cm3),
            "setup_fee": str(self.setup_fee),
            "min_price": str(self.min_price),
            "currency": self.currency,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Material:
        return material_from_input(
            {
                "code": values["code"],
                "name": values["name"],
                "process": values["process"],
                "active": values.get("active", True),
                "minWallMm": values["min_wall_mm"],
                "buildVolume": dict(zip("xyz", values["build_volume"], strict=True)),
                "pricePerCm3": values["price_per_cm3"],
                "machinePricePerCm3": values["machine_price_per_cm3"],
                "setupFee": values["setup_fee"],
                "minPrice": values["min_price"],
                "currency": values.get("currency", "EUR"),
            }
        )


def material_from_input(values: Mapping[str, Any]) -> Material:
    """A Material from `MaterialInput` (camelCase keys, floats or strings).

    Floats from GraphQL are read through their shortest repr (0.1 is "0.1",
    not its binary expansion); more decimal places than a field keeps are
    refused rather than silently rounded.
    """
    volume = values.get("buildVolume")
    if not isinstance(volume, Mapping) or set(volume) != {"x", "y", "z"}:
        raise BadUserInput("buildVolume needs x, y and z.", field="buildVolume")
    given = values.get("process")
    try:
        process = Process(str(getattr(given, "value", given)))
    except ValueError:
        raise BadUserInput("process must be one of FDM, SLA, SLS, MJF.", field="process") from None
    return Material(
        code=_text(values.get("code"), "code"),
        name=_text(values.get("name"), "name"),
        process=process,
        active=_flag(values.get("active", True)),
        min_wall_mm=to_decimal(values.get("minWallMm"), "min_wall_mm"),
        build_volume=(
            to_decimal(volume["x"], "build_x"),
            to_decimal(volume["y"], "build_y"),
            to_decimal(volume["z"], "build_z"),
        ),
        price_per_cm3=to_decimal(values.get("pricePerCm3"), "price_per_cm3"),
        machine_price_per_cm3=to_decimal(values.get("machinePricePerCm3"), "machine_price_per_cm3"),
        setup_fee=to_decimal(values.get("setupFee"), "setup_fee"),
        min_price=to_decimal(values.get("minPrice"), "min_price"),
        currency=_text(values.get("currency", "EUR"), "currency"),
    )


def to_decimal(value: Any, key: str) -> Decimal:
    """An exact Decimal from an int, float, str or Decimal, checked against BOUNDS[key]."""
    api = BOUNDS[key].api
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise BadUserInput(f"{api} must be a number.", field=api)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadUserInput(f"{api} must be a finite number.", field=api)
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise BadUserInput(f"{api} must be a number.", field=api) from None
    _check_decimal(key, number)
    return number


def _check_decimal(key: str, value: Decimal) -> None:
    bound = BOUNDS[key]
    api = bound.api
    if not isinstance(value, Decimal) or not value.is_finite():
        raise BadUserInput(f"{api} must be a finite number.", field=api)
    too_low = value <= bound.low if bound.low_open else value < bound.low
    if too_low or value > bound.high:
        low = f"above {bound.low}" if bound.low_open else f"at least {bound.low}"
        raise BadUserInput(f"{api} must be {low} and at most {bound.high}.", field=api)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > bound.places:
        raise BadUserInput(f"{api} has more than {bound.places} decimal places.", field=api)


def _check_code(code: Any) -> None:
    if not isinstance(code, str) or not CODE_PATTERN.fullmatch(code):
        raise BadUserInput(
            "code must be 2 to 32 characters: capital letters, digits, '_' or '-', "
            "starting with a letter or digit.",
            field="code",
        )


def _check_name(name: Any) -> None:
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > NAME_MAX
        or not name.isprintable()
        or name != name.strip()
    ):
        raise BadUserInput(
            f"name must be 1 to {NAME_MAX} printable characters without surrounding spaces.",
            field="name",
        )


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BadUserInput(f"{field} must be a string.", field=field)
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadUserInput("active must be true or false.", field="active")
    return value


def _seed(
    code: str,
    name: str,
    process: Process,
    min_wall: str,
    box: tuple[str, str, str],
    price: str,
    machine: str,
    setup: str,
    minimum: str,
) -> Material:
    return Material(
        code=code,
        name=name,
        process=process,
        min_wall_mm=Decimal(min_wall),
        build_volume=(Decimal(box[0]), Decimal(box[1]), Decimal(box[2])),
        price_per_cm3=Decimal(price),
        machine_price_per_cm3=Decimal(machine),
        setup_fee=Decimal(setup),
        min_price=Decimal(minimum),
    )


# The catalogue seeded on first start (EUR). Codes are those orders named
# before materials were data (the removed MATERIALS setting), so existing orders
# keep pointing at a material; PA12 is offered on two processes, hence two codes.
# Build volumes are those of the machine class named; minimum walls follow the
# makers' design guides (two 0.4 mm perimeters on FDM, three for flexible TPU;
# Formlabs, EOS and HP guides for the others). Powder processes charge more for
# machine space: the bounding box takes a slot in the build chamber whatever
# the part's own volume.
SEED_MATERIALS: tuple[Material, ...] = (
    _seed("PLA", "PLA (FDM, Prusa MK4 class)", Process.FDM, "0.8",
          ("250", "210", "220"), "0.12", "0.004", "5.00", "10.00"),
    _seed("PETG", "PETG (FDM, Prusa MK4 class)", Process.FDM, "0.8",
          ("250", "210", "220"), "0.15", "0.004", "5.00", "10.00"),
    _seed("ABS", "ABS (FDM, enclosed Prusa MK4 class)", Process.FDM, "0.8",
          ("250", "210", "220"), "0.14", "0.005", "6.00", "12.00"),
    _seed("ASA", "ASA (FDM, enclosed Prusa MK4 class)", Process.FDM, "0.8",
          ("250", "210", "220"), "0.16", "0.005", "6.00", "12.00"),
    _seed("TPU", "TPU 95A flexible (FDM, Prusa MK4 class)", Process.FDM, "1.2",
          ("250", "210", "220"), "0.30", "0.006", "6.00", "15.00"),
    _seed("RESIN_STANDARD", "Standard resin (SLA, Form 3 class)", Process.SLA, "0.6",
          ("145", "145", "185"), "0.35", "0.010", "8.00", "15.00"),
    _seed("RESIN_TOUGH", "Tough resin (SLA, Form 3 class)", Process.SLA, "0.8",
          ("145", "145", "185"), "0.45", "0.010", "8.00", "15.00"),
    _seed("PA12_SLS", "PA12 nylon (SLS, EOS P396 class)", Process.SLS, "0.8",
          ("340", "340", "600"), "0.30", "0.020", "10.00", "20.00"),
    _seed("PA12_MJF", "PA12 nylon (MJF, HP 5200 class)", Process.MJF, "0.6",
          ("380", "284", "380"), "0.25", "0.018", "10.00", "20.00"),
)  # fmt: skip


def seed_catalogue() -> dict[str, Material]:
    """The seeded materials by code (what a first start inserts)."""
    return {material.code: material for material in SEED_MATERIALS}
