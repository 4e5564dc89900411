"""A quote as a frozen value, and the rules for ordering from one.

`draft_quote` puts the per-material verdict, the price and the lead time
together with a snapshot of the material, so that later price changes do not
change it (the storage layer keeps `QuoteDraft.to_dict()` as it is).
`order_terms` is what `requestOrder(quoteId)` may take from a quote.

Pure: the caller supplies the clock, the catalogue and the stored analysis,
and raises NOT_PRINTABLE itself where `printable` is False (the error class
is added with the wiring).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from .errors import BadUserInput
from .fit import machine_box
from .manufacturability import PartFacts, Verdict, check
from .materials import Material
from .pricing import Price, check_quantity, lead_time_days, price

QUOTE_VALIDITY = timedelta(days=14)


@dataclass(frozen=True)
class QuoteDraft:
    material: Material  # as it was when quoted
    quantity: int
    price: Price
    verdict: Verdict
    lead_time_days: int
    created_at: datetime
    expires_at: datetime

    @property
    def printable(self) -> bool:
        return self.verdict.printable

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, exact decimals as strings; the fit's rotation is not kept
        (it outlines the part and only the verdict is shown)."""
        return {
            "material": self.material.to_dict(),
            "quantity": self.quantity,
            "price": self.price.to_dict(),
            "printable": self.verdict.printable,
            "issues": [
                {"code": i.code, "severity": i.severity, "message": i.message}
                for i in self.verdict.issues
            ],
            "lead_time_days": self.lead_time_days,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


def pick_material(code: Any, catalogue: Mapping[str, Material]) -> Material:
    """The active material named `code`, or BAD_USER_INPUT listing the active codes.

    The caller's code is never echoed: it may hold anything.
    """
    material = catalogue.get(code) if isinstance(code, str) else None
    if material is None or not material.active:
        valid = sorted(c for c, m in catalogue.items() if m.active)
        raise BadUserInput(
            f"material must be one of: {', '.join(valid)}.", field="material", valid=valid
        )
    return material


def draft_quote(
    material: Material,
    part: PartFacts,
    volume_mm3: float,
    quantity: int,
    now: datetime,
    validity: timedelta = QUOTE_VALIDITY,
) -> QuoteDraft:
    """Judge and price `quantity` parts; `now` must be timezone-aware.

    Call it for a model whose analysis is DONE; an unusable volume (not
    positive, not finite) raises BAD_USER_INPUT naming `volume`, so the
    caller should answer NOT_PRINTABLE for such models before.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    quantity = check_quantity(quantity)
    verdict = check(material, part)
    quoted = price(material, volume_mm3, machine_box(part.hull.points), quantity)
    return QuoteDraft(
        material=material,
        quantity=quantity,
        price=quoted,
        verdict=verdict,
        lead_time_days=lead_time_days(material, quantity),
        created_at=now,
        expires_at=now + validity,
    )


@dataclass(frozen=True)
class OrderTerms:
    material_code: str
    quantity: int
    total: Decimal  # the quote's total: the order's price
    currency: str
    printable: bool  # False: the caller answers NOT_PRINTABLE and creates nothing


def order_terms(
    quote: Mapping[str, Any],
    material_code: str | None,
    quantity: int | None,
    now: datetime,
) -> OrderTerms:
    """What an order made from a stored quote (`QuoteDraft.to_dict()`) takes.

    With a quote, `material` and `quantity` may be left out; given, they must
    equal the quote's (API.md). An expired quote is refused. Ownership (a
    foreign quote answers NOT_FOUND) is the caller's check, before this.
    """
    code = quote["material"]["code"]
    if material_code is not None and material_code != code:
        raise BadUserInput("material must be the quote's material.", field="material")
    if quantity is not None and quantity != quote["quantity"]:
        raise BadUserInput("quantity must be the quote's quantity.", field="quantity")
    if now >= datetime.fromisoformat(quote["expires_at"]):
        raise BadUserInput("The quote has expired; ask for a new one.", field="quoteId")
    frozen = Price.from_dict(quote["price"])
    return OrderTerms(
        material_code=code,
        quantity=int(quote["quantity"]),
        total=frozen.total,
        currency=frozen.currency,
        printable=bool(quote["printable"]),
    )
