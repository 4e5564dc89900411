"""Quotes as stored: `createQuote` and finding one; the frozen value is domain/quotes.py.

A quote judges and prices a model whose analysis is DONE, in one active material,
from what the analysis stored (domain/part_facts.py, opened in memory). It is
kept as it was made (the material's values, price lines, verdict), so later
catalogue changes do not change it; it expires after QUOTE_VALIDITY (14 days).
A quote that is not printable is still a quote: it shows why (`issues`), and an
order from it is refused with NOT_PRINTABLE.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain import audit, catalogue
from domain.enums import AnalysisStatus
from domain.errors import NotPrintable
from domain.lookups import reachable
from domain.manufacturability import PartFacts
from domain.materials import Material
from domain.model_files import find_model_for
from domain.part_facts import part_facts
from domain.policy import Access, Subject
from domain.pricing import check_quantity
from domain.quotes import QuoteDraft, draft_quote, pick_material
from storage.crypto import KeyRing
from storage.models import Model3D, ModelMetadata, Quote


def subject_of(quote: Quote) -> Subject:
    return Subject("Quote", quote.id, company_id=quote.company_id)


async def find_quote(access: Access, quote_id: object) -> Quote:
    return await reachable(access, Quote, quote_id, subject_of)


# Asks for a model's analysis (the job queue's enqueue_analysis).
Reanalyse = Callable[[UUID], Awaitable[None]]


async def analysed_part(
    keyring: KeyRing, model: Model3D, reanalyse: Reanalyse | None = None
) -> tuple[PartFacts, float]:
    """The part's facts and volume (mm³); NOT_PRINTABLE unless its analysis is DONE
    with a usable volume: nothing can be judged or priced without one.

    An analysis made before quotes existed lacks the sealed hull and walls: with
    `reanalyse`, the model is analysed again (back to PENDING) and the caller is told
    to ask again shortly, rather than getting a verdict that cannot pass."""
    if model.analysis_status != AnalysisStatus.DONE:
        raise NotPrintable(
            f"The model's analysis is {str(model.analysis_status).lower()}, not done; "
            "it can be quoted and ordered once it is.",
            reason="NOT_ANALYSED",
        )
    metadata = await ModelMetadata.get_or_none(model_id=model.id)
    if metadata is None or not math.isfinite(metadata.volume) or metadata.volume <= 0:
        raise NotPrintable("The model has no measurable volume.", reason="NO_VOLUME")
    if metadata.pending_checks:
        # The walls decide whether a material can print it: no verdict before them.
        raise NotPrintable(
            "The model's wall-thickness check is still running; it can be quoted and "
            "ordered in a moment.",
            reason="CHECKS_RUNNING",
        )
    if reanalyse is not None and metadata.hull_sealed is None and metadata.walls_sealed is None:
        await _analyse_again(model, reanalyse)
    return part_facts(keyring, model, metadata), float(metadata.volume)


async def _analyse_again(model: Model3D, reanalyse: Reanalyse) -> None:
    requeued = await Model3D.filter(id=model.id, analysis_status=AnalysisStatus.DONE).update(
        analysis_status=AnalysisStatus.PENDING, analysis_started_at=None
    )
    if requeued:
        await reanalyse(model.id)
    raise NotPrintable(
        "The model was analysed before quotes existed and is being analysed again; "
        "ask again in a minute.",
        reason="REANALYSING",
    )


async def judge(
    keyring: KeyRing,
    model: Model3D,
    material: Material,
    quantity: int,
    now: datetime,
    reanalyse: Reanalyse | None = None,
) -> QuoteDraft:
    """Verdict and price of `quantity` parts in `material` (the fit search runs in a
    thread: it is CPU work of tens of milliseconds)."""
    facts, volume = await analysed_part(keyring, model, reanalyse)
    return await asyncio.to_thread(draft_quote, material, facts, volume, quantity, now)


async def create_quote(
    access: Access,
    keyring: KeyRing,
    model_id: object,
    material_code: Any,
    quantity: Any,
    ip: str | None,
    reanalyse: Reanalyse | None = None,
) -> Quote:
    model = await find_model_for(access, "Mutation.createQuote", model_id)
    count = check_quantity(quantity)
    material = pick_material(material_code, await catalogue.catalogue())
    now = datetime.now(UTC)
    draft = await judge(keyring, model, material, count, now, reanalyse)
    snapshot = draft.to_dict()
    viewer = access.viewer
    quote = await Quote.create(
        model_id=model.id,
        company_id=model.company_id,
        created_by_id=viewer.user_id,
        material_code=material.code,
        snapshot=snapshot,
        created_at=draft.created_at,
        expires_at=draft.expires_at,
    )
    await audit.record(
        "quote.created",
        actor_id=viewer.user_id,
        company_id=model.company_id,
        model_id=model.id,
        ip=ip,
        quote_id=quote.id,
        material=material.code,
        quantity=count,
        total=snapshot["price"]["total"],
        printable=draft.printable,
    )
    return quote
