"""The price formula (domain/pricing.py): worked values, bad input, and properties
over many random models and materials (hypothesis)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import BadUserInput
from domain.materials import Material, Process, seed_catalogue
from domain.pricing import (
    MAX_QUANTITY,
    Price,
    discounted_units,
    lead_time_days,
    price,
)

PLA = seed_catalogue()["PLA"]


def lines_sum(quote: Price) -> Decimal:
    return sum((line.amount for line in quote.lines), Decimal(0))


def test_worked_example_from_the_docs() -> None:
    # docs/pricing.md: a 50 mm cube in PLA, 60 parts.
    quote = price(PLA, 125_000.0, (50.0, 50.0, 50.0), 60)
    assert [(line.label, line.amount) for line in quote.lines] == [
        ("Material: 125.000 cm³ x 0.12 EUR/cm³ x 60", Decimal("900.00")),
        ("Machine space: 125.000 cm³ x 0.004 EUR/cm³ x 60", Decimal("30.00")),
        ("Quantity discount (parts 10-49: 10% off, parts 50-60: 20% off)", Decimal("-96.10")),
        ("Setup fee (once per order)", Decimal("5.00")),
    ]
    assert quote.total == Decimal("838.90")
    assert quote.unit_price == Decimal("13.98")
    assert quote.currency == "EUR" and quote.quantity == 60


def test_small_order_is_topped_up_to_the_minimum() -> None:
    quote = price(PLA, 1000.0, (10.0, 10.0, 10.0), 1)
    assert quote.total == PLA.min_price
    labels = [line.label for line in quote.lines]
    assert "Minimum order top-up to 10.00 EUR" in labels
    assert lines_sum(quote) == quote.total


def test_discount_is_marginal() -> None:
    assert discounted_units(1) == 1
    assert discounted_units(9) == 9
    assert discounted_units(10) == Decimal("9.9")
    assert discounted_units(49) == Decimal("9") + Decimal("0.9") * 40
    assert discounted_units(50) == Decimal("9") + Decimal("0.9") * 40 + Decimal("0.8")
    assert (
        discounted_units(300)
        == 9 + Decimal("0.9") * 40 + Decimal("0.8") * 200 + Decimal("0.7") * 51
    )


def test_rounding_line_appears_only_when_needed() -> None:
    # 1.234 cm³ x 0.12 x 3 = 0.44424; 2.249 cm³ x 0.004 x 3 = 0.026988: the sum of the
    # rounded lines (0.47) and the rounded sum (0.47) agree, no rounding line.
    quote = price(PLA, 1234.0, (20.1, 11.3, 9.9), 3)
    assert "Rounding" not in [line.label for line in quote.lines]
    # Find a case that needs one and check it is small and balances exactly.
    found = False
    for volume in range(1000, 3000, 7):
        quote = price(PLA, volume * 100.0, (60.0, 60.0, 60.0), 13)
        rounding = [line for line in quote.lines if line.label == "Rounding"]
        assert lines_sum(quote) == quote.total
        if rounding:
            found = True
            assert abs(rounding[0].amount) <= Decimal("0.03")
    assert found


@pytest.mark.parametrize("quantity", [0, -1, MAX_QUANTITY + 1, 10**9, 1.5, "3", True, None])
def test_bad_quantities(quantity) -> None:
    with pytest.raises(BadUserInput) as refused:
        price(PLA, 1000.0, (10.0, 10.0, 10.0), quantity)
    assert refused.value.extensions["field"] == "quantity"


@pytest.mark.parametrize("volume", [0.0, -1.0, float("nan"), float("inf"), 1e13, "12", None])
def test_bad_volumes(volume) -> None:
    with pytest.raises(BadUserInput) as refused:
        price(PLA, volume, (10.0, 10.0, 10.0), 1)
    assert refused.value.extensions["field"] == "volume"


@pytest.mark.parametrize(
    "box", [(0.0, 1.0, 1.0), (1.0, -1.0, 1.0), (float("nan"), 1.0, 1.0), (1e5, 1.0, 1.0), (1, 2)]
)
def test_bad_boxes(box) -> None:
    with pytest.raises(BadUserInput) as refused:
        price(PLA, 1.0, box, 1)
    assert refused.value.extensions["field"] == "dimensions"


def test_unit_price_rounds_half_up() -> None:
    # Found by the property below: 226453.14 / 372 = 608.745 exactly.
    material = Material(
        **{**PLA.__dict__, "price_per_cm3": Decimal("0.0001"),
           "machine_price_per_cm3": Decimal("0.0743"), "setup_fee": Decimal("6268.69"),
           "min_price": Decimal(0)}
    )  # fmt: skip
    side = 411.6329527746422
    quote = price(material, 60.0 * side * side, (60.0, side, side), 372)
    assert quote.total == Decimal("226453.14")
    assert quote.unit_price == Decimal("608.75")


def test_frozen_price_round_trips() -> None:
    quote = price(PLA, 125_000.0, (50.0, 50.0, 50.0), 60)
    assert Price.from_dict(quote.to_dict()) == quote


def test_lead_time() -> None:
    catalogue = seed_catalogue()
    assert lead_time_days(PLA, 1) == 3
    assert lead_time_days(PLA, 50) == 3
    assert lead_time_days(PLA, 51) == 4
    assert lead_time_days(catalogue["PA12_SLS"], 1) == 6


# --- properties over random models and materials ---------------------------------

money_places = st.integers(min_value=0, max_value=10**6)  # cents, up to 10,000.00


@st.composite
def materials(draw) -> Material:
    return Material(
        code="RANDOM",
        name="Random material",
        process=draw(st.sampled_from(list(Process))),
        min_wall_mm=Decimal("0.8"),
        build_volume=(Decimal(250), Decimal(210), Decimal(220)),
        price_per_cm3=Decimal(draw(st.integers(1, 50_000))) / 10_000,  # 0.0001 to 5.0000
        machine_price_per_cm3=Decimal(draw(st.integers(0, 10_000))) / 10_000,
        setup_fee=Decimal(draw(money_places)) / 100,
        min_price=Decimal(draw(money_places)) / 100,
    )


sides = st.floats(min_value=0.01, max_value=2000.0, allow_nan=False)
boxes = st.tuples(sides, sides, sides)
fill = st.floats(min_value=0.0001, max_value=1.0)  # part volume / box volume
# Mostly small orders, where the discount tiers change.
quantities = st.integers(min_value=1, max_value=300) | st.integers(
    min_value=1, max_value=MAX_QUANTITY
)
growth = st.floats(min_value=1.0, max_value=1000.0)

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True)


def volume_of(box, share: float) -> float:
    return max(box[0] * box[1] * box[2] * share, 1e-6)


@PROPERTY
@given(materials(), boxes, fill, quantities)
def test_lines_sum_to_total_and_total_respects_minimum(material, box, share, quantity) -> None:
    quote = price(material, volume_of(box, share), box, quantity)
    assert lines_sum(quote) == quote.total
    assert quote.total >= material.min_price
    assert quote.total >= material.setup_fee
    assert quote.total == quote.total.quantize(Decimal("0.01"))
    assert all(line.amount == line.amount.quantize(Decimal("0.01")) for line in quote.lines)
    # Half-up, like the total (226453.14 / 372 = 608.745 gives 608.75).
    unit = (quote.total / quantity).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert quote.unit_price == unit


@PROPERTY
@given(materials(), boxes, fill, quantities)
def test_deterministic(material, box, share, quantity) -> None:
    volume = volume_of(box, share)
    assert price(material, volume, box, quantity) == price(material, volume, box, quantity)


@PROPERTY
@given(materials(), boxes, fill, growth, quantities)
def test_total_never_drops_when_volume_grows(material, box, share, factor, quantity) -> None:
    volume = volume_of(box, share)
    bigger = min(volume * factor, 1e12)
    smaller_total = price(material, volume, box, quantity).total
    assert price(material, bigger, box, quantity).total >= smaller_total


@PROPERTY
@given(materials(), boxes, fill, growth, quantities)
def test_total_never_drops_when_the_part_grows(material, box, share, factor, quantity) -> None:
    # The whole part scales: its volume and its bounding box grow together.
    grown = tuple(min(side * factor ** (1 / 3), 10_000.0) for side in box)
    small = price(material, volume_of(box, share), box, quantity).total
    assert price(material, volume_of(grown, share), grown, quantity).total >= small


@PROPERTY
@given(materials(), boxes, fill, quantities, st.integers(1, 5) | st.integers(1, MAX_QUANTITY))
def test_total_never_drops_when_quantity_grows(material, box, share, quantity, more) -> None:
    volume = volume_of(box, share)
    larger = min(quantity + more, MAX_QUANTITY)
    assert (
        price(material, volume, box, larger).total >= price(material, volume, box, quantity).total
    )


@PROPERTY
@given(materials(), boxes, fill)
def test_every_quantity_step_costs_something_above_the_minimum(material, box, share) -> None:
    # Across each tier boundary, one more part never makes the order cheaper.
    volume = volume_of(box, share)
    totals = [price(material, volume, box, q).total for q in (8, 9, 10, 11, 49, 50, 51, 249, 250)]
    assert totals == sorted(totals)
