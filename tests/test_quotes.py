"""Quotes as frozen values and orders from quotes (domain/quotes.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from domain.analysis.report import Issue
from domain.errors import BadUserInput
from domain.hull_summary import summarise_hull
from domain.manufacturability import PartFacts, WallProfile
from domain.materials import seed_catalogue
from domain.quotes import QUOTE_VALIDITY, draft_quote, order_terms, pick_material

NOW = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
CATALOGUE = seed_catalogue()
PLA, RESIN = CATALOGUE["PLA"], CATALOGUE["RESIN_STANDARD"]


def no_thin_walls() -> WallProfile:
    return WallProfile.from_rays(np.full(2000, np.inf), np.arange(2000) < 1000)


def bar_part(length: float, width: float, rotation: np.ndarray | None = None) -> PartFacts:
    points = trimesh.creation.box((length, width, width)).vertices
    if rotation is not None:
        points = points @ rotation.T
    return PartFacts(issues=(), hull=summarise_hull(points), walls=no_thin_walls())


def stored(draft) -> dict:
    # What the storage layer keeps: JSON text, read back.
    return json.loads(json.dumps(draft.to_dict()))


@pytest.mark.parametrize("code", ["PETG black", "pla", "", None, 5, "NOPE", "PLA'; --"])
def test_unknown_codes_list_the_valid_ones_without_echoing(code) -> None:
    with pytest.raises(BadUserInput) as refused:
        pick_material(code, CATALOGUE)
    assert refused.value.extensions["field"] == "material"
    assert refused.value.extensions["valid"] == sorted(CATALOGUE)
    assert "PLA, " in refused.value.message and "PA12_MJF" in refused.value.message
    if isinstance(code, str) and code:
        assert code not in refused.value.message


def test_inactive_materials_cannot_be_quoted() -> None:
    catalogue = {**CATALOGUE, "TPU": replace(CATALOGUE["TPU"], active=False)}
    with pytest.raises(BadUserInput) as refused:
        pick_material("TPU", catalogue)
    assert "TPU" not in refused.value.extensions["valid"]
    assert pick_material("PLA", catalogue) is catalogue["PLA"]


def test_a_quote_in_two_materials() -> None:
    # The issue's scenario: one part, quoted in PLA (fits diagonally) and in
    # resin (too long for a Form 3 in any orientation).
    part = bar_part(330, 20)
    volume = 330 * 20 * 20.0
    in_pla = draft_quote(PLA, part, volume, 2, NOW)
    in_resin = draft_quote(RESIN, part, volume, 2, NOW)
    assert in_pla.printable and not in_resin.printable
    assert [i.code for i in in_resin.verdict.issues] == ["EXCEEDS_BUILD_VOLUME"]
    assert in_pla.expires_at - in_pla.created_at == QUOTE_VALIDITY == timedelta(days=14)
    assert in_pla.lead_time_days == 3
    # Priced even when not printable, so the customer sees what the other costs.
    assert in_resin.price.total > in_pla.price.total


def test_price_does_not_depend_on_the_uploaded_orientation() -> None:
    straight = draft_quote(PLA, bar_part(200, 20), 80_000.0, 1, NOW)
    tilt = Rotation.from_euler("xyz", [30, 40, 50], degrees=True).as_matrix()
    tilted = draft_quote(PLA, bar_part(200, 20, tilt), 80_000.0, 1, NOW)
    assert straight.price == tilted.price


def test_a_quote_is_frozen_against_later_price_changes() -> None:
    draft = draft_quote(PLA, bar_part(50, 50), 125_000.0, 1, NOW)
    kept = stored(draft)
    dearer = replace(PLA, price_per_cm3=Decimal("0.50"))
    assert draft_quote(dearer, bar_part(50, 50), 125_000.0, 1, NOW).price.total > draft.price.total
    terms = order_terms(kept, None, None, NOW + timedelta(days=1))
    assert terms.total == draft.price.total == Decimal("20.50")
    assert kept["material"]["price_per_cm3"] == "0.12"


def test_order_terms_come_from_the_quote() -> None:
    kept = stored(draft_quote(PLA, bar_part(50, 50), 125_000.0, 3, NOW))
    terms = order_terms(kept, "PLA", 3, NOW + timedelta(days=13))
    assert (terms.material_code, terms.quantity, terms.currency) == ("PLA", 3, "EUR")
    assert terms.printable
    assert terms == order_terms(kept, None, None, NOW)


@pytest.mark.parametrize(
    ("material", "quantity", "field"),
    [("PETG", None, "material"), (None, 4, "quantity"), ("PLA", 1, "quantity")],
)
def test_order_terms_must_match_the_quote(material, quantity, field) -> None:
    kept = stored(draft_quote(PLA, bar_part(50, 50), 125_000.0, 3, NOW))
    with pytest.raises(BadUserInput) as refused:
        order_terms(kept, material, quantity, NOW)
    assert refused.value.extensions["field"] == field


def test_expired_quotes_are_refused() -> None:
    kept = stored(draft_quote(PLA, bar_part(50, 50), 125_000.0, 1, NOW))
    with pytest.raises(BadUserInput) as refused:
        order_terms(kept, None, None, NOW + QUOTE_VALIDITY)
    assert refused.value.extensions["field"] == "quoteId"


def test_an_unprintable_quote_says_so_to_the_order() -> None:
    open_edges = Issue("OPEN_EDGES", "error", "The surface is not closed.")
    part = replace(bar_part(50, 50), issues=(open_edges,), walls=None)
    kept = stored(draft_quote(PLA, part, 125_000.0, 1, NOW))
    assert kept["printable"] is False
    assert kept["issues"][0]["code"] == "OPEN_EDGES"
    assert order_terms(kept, None, None, NOW).printable is False


@pytest.mark.parametrize("quantity", [0, 10**9, -1])
def test_bad_quantities(quantity) -> None:
    with pytest.raises(BadUserInput):
        draft_quote(PLA, bar_part(50, 50), 125_000.0, quantity, NOW)


def test_the_clock_must_be_aware() -> None:
    with pytest.raises(ValueError):
        draft_quote(PLA, bar_part(50, 50), 125_000.0, 1, datetime(2026, 11, 30))
