"""The analysis in two stages (issue 8): DONE with everything but the wall check, then
the complete verdict. Sampling thousands of rays is most of what a CAD part costs, and
nothing a customer sees first (size, volume, holes) waits for it; quotes and orders do.

In-process, through the real analysis child, through the job (what is recorded when,
what a failed check leaves, what the sweep does for a check whose process died) and
over the API (no quote or order while a check runs)."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from tortoise.timezone import now as utc_now

from domain.analysis import AnalysisFailed, AnalysisOptions, analyse
from domain.analysis.sandbox import prestart, run_isolated
from domain.analysis_job import Outcome
from runtime.jobs import JobOptions, JobQueue
from storage.models import AnalysisStatus, Model3D, ModelMetadata, Quote
from tests.helpers import ADDRESS, Api, Caller, analysed_model, box_stl
from tests.test_jobs import FAST_RETRY, JobLimits, make_job, store_model, wait_for_status

THIN = box_stl(10.0, 10.0, 0.4)  # a 0.4 mm plate: thin walls everywhere (an error)
OPTIONS = AnalysisOptions()
MEMORY = 1 << 30
# A wall check of millions of rays reaches one limit or the other, depending on the machine.
CUT_OFF = r"The analysis exceeded (2 seconds|the memory limit of 1024 MB)\."


def _same_but_walls(first, final) -> None:
    """Everything but the wall verdict is already final in the first report."""
    for field in ("dimensions", "volume", "surface_area", "triangle_count", "body_count",
                  "is_watertight", "weld_tolerance_mm", "hull", "file_size", "format"):
        assert getattr(first, field) == getattr(final, field), field


def test_the_first_report_lacks_only_the_wall_check() -> None:
    firsts: list = []
    final = analyse(THIN, "plate.stl", "stl", OPTIONS, on_first=firsts.append)
    [first] = firsts
    assert first.pending_checks == ("THIN_WALLS",) and first.walls is None
    assert first.printability.printable and not first.printability.issues
    assert final.pending_checks == () and final.walls is not None
    assert [i.code for i in final.printability.issues] == ["THIN_WALLS"]
    assert not final.printability.printable  # the check can turn the verdict
    _same_but_walls(first, final)
    # Without a listener the result is the same complete report.
    assert analyse(THIN, "plate.stl", "stl", OPTIONS) == final


def test_an_open_mesh_has_no_second_stage() -> None:
    open_box = box_stl()[: 84 + 50 * 11]  # one facet missing
    open_box = open_box[:80] + (11).to_bytes(4, "little") + open_box[84:]
    firsts: list = []
    report = analyse(open_box, "open.stl", "stl", OPTIONS, on_first=firsts.append)
    assert firsts == [] and report.pending_checks == ()
    assert "THICKNESS_NOT_CHECKED" in {i.code for i in report.printability.issues}


def test_the_child_sends_its_first_report_before_the_wall_check() -> None:
    prestart()
    arrivals: list[tuple[float, Any]] = []
    started = time.monotonic()
    final = run_isolated(
        bytearray(THIN), "plate.stl", "stl", OPTIONS, 60, MEMORY,
        on_first=lambda report: arrivals.append((time.monotonic() - started, report)),
    )
    [(_, first)] = arrivals
    assert first.file_name == "plate.stl" and first.pending_checks == ("THIN_WALLS",)
    assert final.pending_checks == () and not final.printability.printable
    _same_but_walls(first, final)


def test_a_wall_check_cut_off_by_the_time_limit_leaves_the_first_report() -> None:
    """The proof that the first report leaves the child before the wall check runs:
    a check that cannot finish within the limits (millions of rays: the time or the
    memory limit, whichever this machine reaches first) still lets it out."""
    prestart()
    slow = AnalysisOptions(wall_thickness_samples=3_000_000)
    firsts: list = []
    with pytest.raises(AnalysisFailed, match=CUT_OFF) as cut_off:
        run_isolated(bytearray(THIN), "plate.stl", "stl", slow, 2, MEMORY, on_first=firsts.append)
    [first] = firsts
    assert first.pending_checks == ("THIN_WALLS",) and first.volume == pytest.approx(40.0)
    # What the job then records: the first report, naming the check as not done.
    kept = first.checks_abandoned(cut_off.value.reason)
    assert kept.pending_checks == () and kept.printability.printable and kept.walls is None
    [issue] = kept.printability.issues
    assert (issue.code, issue.severity) == ("THICKNESS_NOT_CHECKED", "info")
    assert issue.message == f"Wall thickness was not checked: {cut_off.value.reason}"


# --- the job -----------------------------------------------------------------------------


async def test_the_job_records_done_first_then_the_complete_verdict(
    database, job_settings, store, keyring
) -> None:
    model = await store_model(store, keyring, THIN, file_name="plate.stl")
    seen: list[tuple[Any, ModelMetadata]] = []

    async def first_done() -> None:  # what a client polling at that moment reads
        row = await Model3D.get(id=model.id)
        seen.append((row.analysis_status, await ModelMetadata.get(model_id=model.id)))

    # The most rays allowed: the check takes 0.1 s or more, so the first report is
    # always recorded before the complete one is in (else one write, no first stage).
    slow_walls = replace(job_settings, wall_thickness_samples=20_000)
    assert await make_job(slow_walls, store, keyring).run(model.id, None, first_done) is (
        Outcome.DONE
    )
    [(status, first)] = seen
    assert status is AnalysisStatus.DONE
    assert first.pending_checks == "THIN_WALLS" and first.printable and first.issues == []
    assert first.walls_sealed is None and first.hull_sealed is not None
    final = await ModelMetadata.get(model_id=model.id)
    assert final.pending_checks == "" and not final.printable and final.walls_sealed
    assert [i["code"] for i in final.issues] == ["THIN_WALLS"]
    assert (final.volume, final.size_z) == (first.volume, first.size_z)


async def test_a_failed_wall_check_keeps_the_first_report(
    database, job_settings, store, keyring
) -> None:
    """The child dies in the wall check (time or memory limit): the model stays DONE
    with what was measured, and says the walls were not checked; it is never FAILED."""
    model = await store_model(store, keyring, THIN, file_name="plate.stl")

    def dies_in_the_wall_check(data, name, fmt, options, timeout, memory, on_first=None):
        slow = AnalysisOptions(**{**options.to_dict(), "wall_thickness_samples": 3_000_000})
        return run_isolated(data, name, fmt, slow, 2, memory, on_first)

    job = make_job(job_settings, store, keyring, analyse=dies_in_the_wall_check)
    announced: list[bool] = []

    async def first_done() -> None:
        announced.append(True)

    assert await job.run(model.id, None, first_done) is Outcome.DONE
    assert announced == [True]
    row = await Model3D.get(id=model.id)
    assert (row.analysis_status, row.analysis_error) == (AnalysisStatus.DONE, None)
    meta = await ModelMetadata.get(model_id=model.id)
    assert meta.pending_checks == "" and meta.printable and meta.walls_sealed is None
    [issue] = meta.issues
    assert issue["code"] == "THICKNESS_NOT_CHECKED"
    assert re.fullmatch(f"Wall thickness was not checked: {CUT_OFF}", issue["message"]), issue


async def test_a_check_whose_process_died_is_done_again_by_the_sweep(
    database, job_settings, store, keyring
) -> None:
    lease_s = job_settings.analysis_timeout_seconds + 5.0
    long_ago = utc_now() - timedelta(seconds=lease_s + 5)
    done = {"analysis_status": AnalysisStatus.DONE, "analysis_attempts": 1}
    orphan = await store_model(store, keyring, THIN, analysis_started_at=long_ago, **done)
    recent = await store_model(store, keyring, THIN, analysis_started_at=utc_now(), **done)
    for model in (orphan, recent):  # a first report whose check never reported back
        await ModelMetadata.create(
            model_id=model.id, file_name="cube.stl", file_size=len(THIN), format="stl",
            size_x=10, size_y=10, size_z=0.4, volume=40, surface_area=216, triangle_count=12,
            body_count=1, is_watertight=True, printable=True, pending_checks="THIN_WALLS",
        )
    options = JobOptions(limits=JobLimits(retry=FAST_RETRY, lease_margin_s=5.0))
    queue = JobQueue(job_settings, store, keyring, options)
    try:
        assert await queue.sweep() == [orphan.id]
        await wait_for_status(orphan.id, [AnalysisStatus.DONE])
        for _ in range(200):
            meta = await ModelMetadata.get_or_none(model_id=orphan.id)
            if meta is not None and not meta.pending_checks:
                break
            await asyncio.sleep(0.05)
        assert meta is not None and meta.pending_checks == "" and not meta.printable
        assert await queue.sweep() == []  # the recent one is still within its lease
    finally:
        await queue.stop()
    assert (await ModelMetadata.get(model_id=recent.id)).pending_checks == "THIN_WALLS"


# --- over the API ------------------------------------------------------------------------

CREATE_QUOTE = """mutation($m: ID!) { createQuote(modelId: $m, materialCode: "PLA", quantity: 1) {
  id } }"""
REQUEST = "mutation($i: OrderInput!) { requestOrder(input: $i) { id } }"
PRINTABILITY = """query($m: ID!) { model(id: $m) { analysisStatus metadata { volume
  printability { printable pendingChecks issues { code } } } } }"""


async def test_no_quote_or_order_while_the_wall_check_runs(api: Api, customer: Caller) -> None:
    model = await analysed_model(api.services.keyring, customer.user.company_id, customer.user.id)
    await ModelMetadata.filter(model_id=model.id).update(pending_checks="THIN_WALLS")
    shown = (await api.ok(PRINTABILITY, {"m": str(model.id)}, customer.token))["model"]
    assert shown["analysisStatus"] == "DONE"
    assert shown["metadata"]["printability"]["pendingChecks"] == ["THIN_WALLS"]

    order = {"modelId": str(model.id), "quantity": 1, "material": "PLA",
             "shippingAddress": ADDRESS, "billingAddress": ADDRESS}
    for query, variables in ((CREATE_QUOTE, {"m": str(model.id)}), (REQUEST, {"i": order})):
        body = await api.gql(query, variables, customer.token)
        [error] = body["errors"]
        assert error["extensions"]["code"] == "NOT_PRINTABLE", error
        assert error["extensions"]["reason"] == "CHECKS_RUNNING"
        assert "still running" in error["message"]
    assert await Quote.all().count() == 0

    await ModelMetadata.filter(model_id=model.id).update(pending_checks="")
    assert (await api.ok(CREATE_QUOTE, {"m": str(model.id)}, customer.token))["createQuote"]
