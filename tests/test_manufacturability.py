"""Per-material checks (domain/manufacturability.py) and the fit search behind them
(domain/fit.py, domain/hull_summary.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from domain.analysis.report import Issue
from domain.fit import find_fit, machine_box
from domain.hull_summary import HullSummary, summarise_hull
from domain.manufacturability import PartFacts, WallProfile, check
from domain.materials import seed_catalogue

MK4 = (250.0, 210.0, 220.0)
CATALOGUE = seed_catalogue()
PLA, RESIN = CATALOGUE["PLA"], CATALOGUE["RESIN_STANDARD"]
MESHES = Path(__file__).resolve().parents[2] / "shared" / "meshes"


def bar(length: float, width: float, height: float) -> np.ndarray:
    return trimesh.creation.box((length, width, height)).vertices


def assert_placed_inside(points: np.ndarray, fit, box, margin: float = 0.0) -> None:
    """The returned transform itself, applied to every point, lands in the box."""
    rotation = fit.rotation
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    placed = points @ rotation.T + fit.offset
    assert np.allclose(placed, fit.place(points))
    assert (placed >= 0).all()
    assert (placed <= np.asarray(box)).all()
    extents = placed.max(axis=0) - placed.min(axis=0)
    assert (extents + 2 * margin <= np.asarray(box) + 1e-9).all()


# --- the fit search ------------------------------------------------------------


def test_a_3000_mm_bar_fits_no_printer_of_the_catalogue() -> None:
    points = bar(3000, 10, 10)
    for material in CATALOGUE.values():
        assert find_fit(points, material.build_volume_mm) is None


def test_a_300_mm_bar_fits_the_mk4_diagonally() -> None:
    points = bar(300, 10, 10)
    # No axis-aligned orientation fits: 300 exceeds every side.
    assert max(MK4) < 300
    fit = find_fit(points, MK4)
    assert fit is not None
    assert not fit.axis_aligned
    assert_placed_inside(points, fit, MK4)


def test_a_long_bar_is_placed_whatever_its_uploaded_orientation() -> None:
    tilted = (
        bar(330, 20, 20) @ Rotation.from_euler("xyz", [17, -33, 71], degrees=True).as_matrix().T
    )
    fit = find_fit(tilted + 1000.0, MK4)  # far from the origin too
    assert fit is not None
    assert_placed_inside(tilted + 1000.0, fit, MK4)


def test_the_search_is_deterministic() -> None:
    points = bar(330, 20, 20)
    first, second = find_fit(points, MK4), find_fit(points, MK4)
    assert np.array_equal(first.rotation, second.rotation)
    assert np.array_equal(first.offset, second.offset)


def test_the_search_gets_close_to_the_longest_bar_that_fits() -> None:
    # A brute-force search (bench/fit.py: 20,000 rotations, 40 refinements) finds
    # 5x5 mm bars fit the MK4 up to about 385.0 mm; the quote's search within 1 mm.
    points = bar(384, 5, 5)
    fit = find_fit(points, MK4)
    assert fit is not None
    assert_placed_inside(points, fit, MK4)


def test_a_bar_longer_than_the_diagonal_is_rejected() -> None:
    diagonal = float(np.linalg.norm(MK4))  # 391.3 mm
    assert find_fit(np.array([[0, 0, 0], [diagonal + 0.1, 0, 0]], float), MK4) is None
    segment = np.array([[0, 0, 0], [diagonal - 0.1, 0, 0]], float)
    fit = find_fit(segment, MK4)
    assert fit is not None
    assert_placed_inside(segment, fit, MK4)


def test_a_cube_exactly_the_size_of_the_box_fits_axis_aligned() -> None:
    points = bar(250, 210, 220)
    fit = find_fit(points, MK4)
    assert fit is not None and fit.axis_aligned
    assert_placed_inside(points, fit, MK4)
    # Any permutation of the sides fits too (a quarter-turn, not a tilt).
    fit = find_fit(bar(220, 250, 210), MK4)
    assert fit is not None and fit.axis_aligned


def test_a_cube_wider_than_the_smallest_side_never_fits() -> None:
    # A cube is at least its side wide in every direction.
    assert find_fit(bar(210.5, 210.5, 210.5), MK4) is None
    fit = find_fit(bar(209.5, 209.5, 209.5), MK4)
    assert fit is not None


def test_spheres() -> None:
    # Rotating a sphere changes nothing: it fits iff its diameter fits the smallest side.
    small = trimesh.creation.icosphere(3, radius=104).vertices
    fit = find_fit(small, MK4)
    assert fit is not None
    assert_placed_inside(small, fit, MK4)
    assert find_fit(trimesh.creation.icosphere(3, radius=108).vertices, MK4) is None


def test_degenerate_parts() -> None:
    point = np.array([[5.0, 5.0, 5.0]])
    fit = find_fit(point, MK4)
    assert fit is not None
    assert_placed_inside(point, fit, MK4)
    plate = np.array([[0, 0, 0], [300, 0, 0], [0, 150, 0], [300, 150, 0]], float)
    fit = find_fit(plate, MK4)  # 300 mm flat plate: fits on a face diagonal or tilted
    assert fit is not None
    assert_placed_inside(plate, fit, MK4)


def test_margin_is_kept_free() -> None:
    points = bar(240, 200, 210)
    assert find_fit(points, MK4, margin_mm=4.9) is not None
    fit = find_fit(points, MK4, margin_mm=4.9)
    assert_placed_inside(points, fit, MK4, margin=4.9)
    assert find_fit(points, (240.0, 200.0, 210.0), margin_mm=0.5) is None


@pytest.mark.parametrize(
    "points",
    [np.empty((0, 3)), np.zeros((3, 2)), np.array([[0, 0, np.nan]]), np.array([[np.inf, 0, 0]])],
)
def test_bad_points_are_refused(points) -> None:
    with pytest.raises(ValueError):
        find_fit(points, MK4)


@pytest.mark.parametrize("margin", [-0.1, float("nan"), float("inf")])
def test_bad_margins_are_refused(margin) -> None:
    with pytest.raises(ValueError):
        find_fit(bar(1, 1, 1), MK4, margin)


@pytest.mark.parametrize("box", [(0, 1, 1), (-1, 1, 1), (np.nan, 1, 1), (1, 1)])
def test_bad_boxes_are_refused(box) -> None:
    with pytest.raises(ValueError):
        find_fit(bar(1, 1, 1), box)


# Random parts: boxes and blobs in random orientations.
sides = st.floats(min_value=1.0, max_value=420.0)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.tuples(sides, sides, sides),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.booleans(),
)
def test_any_returned_orientation_verifies(size, seed, blob) -> None:
    rng = np.random.default_rng(seed)
    # A random blob of points within the box `size`, or that box's corners.
    points = (rng.random((200, 3)) - 0.5) * np.asarray(size) if blob else bar(*size)
    points = points @ Rotation.random(rng=rng).as_matrix().T + rng.normal(0, 500, 3)
    fit = find_fit(points, MK4)
    if fit is not None:
        assert_placed_inside(points, fit, MK4)
    # A fact no search may contradict: nothing longer than the box's diagonal fits.
    if float(np.ptp(points, axis=0).max()) > float(np.linalg.norm(MK4)):
        assert fit is None


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.tuples(sides, sides, sides), st.integers(min_value=0, max_value=2**32 - 1))
def test_a_box_that_fits_axis_aligned_is_found_in_any_orientation(size, seed) -> None:
    rng = np.random.default_rng(seed)
    fits_straight = (np.sort(size) <= np.sort(MK4)).all()
    points = bar(*size) @ Rotation.random(rng=rng).as_matrix().T
    fit = find_fit(points, MK4)
    if fits_straight:
        assert fit is not None  # the search must undo any rotation
    if fit is not None:
        assert_placed_inside(points, fit, MK4)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.floats(min_value=392.0, max_value=5000.0), st.integers(0, 2**32 - 1))
def test_parts_longer_than_the_diagonal_never_fit(length, seed) -> None:
    rng = np.random.default_rng(seed)
    points = bar(length, 5, 5) @ Rotation.random(rng=rng).as_matrix().T
    assert find_fit(points, MK4) is None


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.tuples(sides, sides, sides), st.integers(0, 2**32 - 1))
def test_machine_box_does_not_depend_on_the_uploaded_orientation(size, seed) -> None:
    rng = np.random.default_rng(seed)
    points = bar(*size) @ Rotation.random(rng=rng).as_matrix().T + rng.normal(0, 100, 3)
    box = machine_box(points)
    assert box == tuple(sorted(box))
    assert np.allclose(box, np.sort(size), rtol=1e-6)
    # Never more than the box as uploaded.
    assert np.prod(box) <= np.prod(np.ptp(points, axis=0)) * (1 + 1e-9)


# --- the stored hull summary ---------------------------------------------------


def test_summary_keeps_small_hulls_exactly() -> None:
    summary = summarise_hull(bar(300, 10, 10))
    assert len(summary.points) == 8 and summary.margin_mm == 0.0


def test_summary_of_a_fine_sphere_is_small_and_bounds_its_error() -> None:
    vertices = trimesh.creation.icosphere(5, radius=50).vertices  # 10242 hull vertices
    summary = summarise_hull(vertices)
    assert len(summary.points) <= 512
    assert 0 < summary.margin_mm < 1.0
    # Every vertex is within margin of the summary's hull: the support function of
    # all vertices exceeds the summary's by at most the margin in every direction.
    directions = Rotation.random(2000, rng=np.random.default_rng(1)).apply([1.0, 0.0, 0.0])
    full = (vertices @ directions.T).max(axis=0)
    kept = (summary.points @ directions.T).max(axis=0)
    assert (full <= kept + summary.margin_mm + 1e-9).all()
    assert (full - kept).max() > 0  # the summary really dropped something


def test_a_fit_of_the_summary_with_its_margin_is_a_fit_of_the_part() -> None:
    cylinder = trimesh.creation.cylinder(radius=6, height=375, sections=720).vertices
    summary = summarise_hull(cylinder)
    assert len(summary.points) < len(np.unique(cylinder, axis=0))
    fit = find_fit(summary.points, MK4, summary.margin_mm)
    assert fit is not None and not fit.axis_aligned
    assert_placed_inside(cylinder, fit, MK4)


def test_summary_round_trips_and_refuses_garbage() -> None:
    summary = summarise_hull(trimesh.creation.icosphere(4, radius=20).vertices)
    again = HullSummary.from_dict(summary.to_dict())
    assert np.array_equal(again.points, summary.points)
    assert again.margin_mm == summary.margin_mm
    with pytest.raises(ValueError):
        HullSummary.from_dict({"points": [[0, 0, float("nan")]], "margin_mm": 0})
    with pytest.raises(ValueError):
        HullSummary.from_dict({"points": [[0, 0, 0]], "margin_mm": -1})


def test_flat_and_straight_parts_summarise() -> None:
    grid = np.stack(np.meshgrid(np.arange(30.0), np.arange(20.0), [0.0]), -1).reshape(-1, 3)
    summary = summarise_hull(grid)
    assert len(summary.points) == 4  # the plate's corners
    line = np.outer(np.arange(100.0), [1.0, 2.0, 3.0])
    assert len(summarise_hull(line).points) == 2
    # Almost flat (off the plane by rounding only): the stray distance is the margin.
    bumpy = grid.copy()
    bumpy[7, 2] = 1e-13
    summary = summarise_hull(bumpy)
    assert 0 <= summary.margin_mm < 1e-9
    with pytest.raises(ValueError):
        HullSummary.from_dimensions(1.0, float("nan"), 1.0)


@pytest.mark.skipif(not MESHES.is_dir(), reason=f"shared meshes not found at {MESHES}")
@pytest.mark.parametrize("name", ["7_8ths_cube.stl", "20mm-xyz-cube.stl", "counterXP.3MF"])
def test_real_meshes_fit_and_verify(name: str) -> None:
    path = MESHES / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    mesh = trimesh.load(path, force="mesh")
    summary = summarise_hull(mesh.vertices)
    for material in CATALOGUE.values():
        fit = find_fit(summary.points, material.build_volume_mm, summary.margin_mm)
        fits_straight = (np.sort(mesh.extents) <= np.sort(material.build_volume_mm)).all()
        if fits_straight:
            assert fit is not None
        if fit is not None:
            assert_placed_inside(mesh.vertices, fit, material.build_volume_mm)


# --- the per-material verdict ----------------------------------------------------


def profile(thin_mm: float, share: float, samples: int = 2000) -> WallProfile:
    """Half the rays by area; `share` of those meet a wall of `thin_mm`."""
    weighted = np.arange(samples) < samples // 2
    distance = np.full(samples, np.inf)
    thin = int(share * (samples // 2))
    distance[:thin] = thin_mm
    distance[samples - 10 :] = 4.0  # a few thick walls within the probe
    return WallProfile.from_rays(distance, weighted)


def facts(points: np.ndarray, walls: WallProfile | None, *issues: Issue) -> PartFacts:
    return PartFacts(issues=tuple(issues), hull=summarise_hull(points), walls=walls)


def codes(verdict) -> dict[str, str]:
    return {issue.code: issue.severity for issue in verdict.issues}


def test_thin_walls_depend_on_the_material() -> None:
    part = facts(bar(50, 50, 50), profile(0.7, 0.05))
    in_pla, in_resin = check(PLA, part), check(RESIN, part)
    assert not in_pla.printable
    assert codes(in_pla) == {"THIN_WALLS": "error"}
    assert "0.70 mm" in in_pla.reason and "0.8 mm" in in_pla.reason
    assert in_resin.printable and codes(in_resin) == {}


def test_a_few_thin_spots_are_a_warning() -> None:
    verdict = check(PLA, facts(bar(50, 50, 50), profile(0.5, 0.004)))
    assert verdict.printable
    assert codes(verdict) == {"THIN_WALLS": "warning"}


def test_build_volume_depends_on_the_material() -> None:
    part = facts(bar(330, 20, 20), profile(1.0, 0.0))
    in_pla, in_resin = check(PLA, part), check(RESIN, part)
    assert in_pla.printable and codes(in_pla) == {"ROTATED_TO_FIT": "info"}
    assert_placed_inside(bar(330, 20, 20), in_pla.fit, PLA.build_volume_mm)
    assert not in_resin.printable
    assert codes(in_resin) == {"EXCEEDS_BUILD_VOLUME": "error"}
    assert "any orientation" in in_resin.reason


def test_a_3000_mm_bar_is_not_printable_in_any_seeded_material() -> None:
    part = facts(bar(3000, 10, 10), profile(1.0, 0.0))
    for material in CATALOGUE.values():
        verdict = check(material, part)
        assert not verdict.printable and verdict.fit is None
        assert codes(verdict)["EXCEEDS_BUILD_VOLUME"] == "error"


def test_material_independent_defects_are_kept_and_default_verdicts_replaced() -> None:
    default_walls = Issue("THIN_WALLS", "error", "Walls as thin as 0.70 mm (minimum 0.8 mm).")
    default_size = Issue("EXCEEDS_BUILD_VOLUME", "error", "... any axis-aligned orientation.")
    bodies = Issue("MULTIPLE_BODIES", "warning", "Two bodies.")
    part = facts(bar(300, 10, 10), profile(0.7, 0.05), default_walls, default_size, bodies)
    # PLA: the platform defaults' verdicts are replaced by PLA's own: walls of 0.7 mm
    # are too thin for it, but the bar fits diagonally.
    in_pla = check(PLA, part)
    assert codes(in_pla) == {
        "THIN_WALLS": "error",
        "MULTIPLE_BODIES": "warning",
        "ROTATED_TO_FIT": "info",
    }
    assert [issue.severity for issue in in_pla.issues] == ["error", "warning", "info"]
    # Resin: 0.7 mm walls are fine; 300 mm exceed its 274 mm diagonal.
    in_resin = check(RESIN, part)
    assert codes(in_resin) == {"EXCEEDS_BUILD_VOLUME": "error", "MULTIPLE_BODIES": "warning"}
    assert RESIN.name in in_resin.reason and "any orientation" in in_resin.reason


def test_open_surfaces_stay_unprintable() -> None:
    open_edges = Issue("OPEN_EDGES", "error", "The surface is not closed.")
    not_checked = Issue("THICKNESS_NOT_CHECKED", "info", "not closed")
    verdict = check(PLA, facts(bar(50, 50, 50), None, open_edges, not_checked))
    assert not verdict.printable and verdict.reason == "The surface is not closed."
    assert codes(verdict) == {"OPEN_EDGES": "error", "THICKNESS_NOT_CHECKED": "info"}


def test_walls_not_measured_for_this_minimum_fail_safe() -> None:
    # A closed part whose analysis stored no wall profile (an older analysis) ...
    verdict = check(PLA, facts(bar(50, 50, 50), None))
    assert not verdict.printable
    assert codes(verdict) == {"THICKNESS_NOT_CHECKED": "error"}
    # ... or one measured only up to 0.5 mm, for a material that needs 0.8 mm.
    shallow = WallProfile.from_rays(np.full(100, np.inf), np.ones(100, bool), probe_mm=0.5)
    verdict = check(PLA, facts(bar(50, 50, 50), shallow))
    assert codes(verdict) == {"THICKNESS_NOT_CHECKED": "error"}


def test_wall_profile_round_trips() -> None:
    walls = profile(0.7, 0.05)
    again = WallProfile.from_dict(walls.to_dict())
    assert again.samples == walls.samples and again.weighted_samples == walls.weighted_samples
    assert np.array_equal(again.distances, walls.distances)
    assert np.array_equal(again.weighted, walls.weighted)
    assert walls.thin(0.8) == again.thin(0.8) == (50, 0.05, 0.7)
    assert walls.thin(0.69) == (0, 0.0, float("inf"))


def test_old_analyses_check_the_bounding_box_instead() -> None:
    # Without a stored hull, the box corners stand in: sound (the box holds the part).
    corners = HullSummary.from_dimensions(300.0, 10.0, 10.0)
    verdict = check(PLA, PartFacts(issues=(), hull=corners, walls=profile(1.0, 0.0)))
    assert verdict.printable and codes(verdict) == {"ROTATED_TO_FIT": "info"}
    assert_placed_inside(bar(300, 10, 10) + 150 - np.array([0, 145, 145]), verdict.fit, MK4)


def test_large_meshes_are_snapped_to_a_grid_soundly() -> None:
    """Above SNAP_ABOVE vertices the summary is built from grid cells (a fine sphere:
    every vertex on the hull would take qhull seconds); a fit it finds must still hold
    every original vertex."""
    from domain import hull_summary
    from domain.fit import find_fit

    sphere = trimesh.creation.icosphere(subdivisions=6, radius=20.0)
    vertices = np.asarray(sphere.vertices) + np.array([5.0, -3.0, 7.0])
    assert len(vertices) > hull_summary.SNAP_ABOVE
    summary = hull_summary.summarise_hull(vertices)
    assert 0 < summary.margin_mm < 2.0 and len(summary.points) <= hull_summary.MAX_POINTS
    fit = find_fit(summary.points, (43.0, 43.0, 43.0), summary.margin_mm)
    assert fit is not None
    placed = fit.place(vertices)
    assert placed.min() >= -1e-9 and (placed.max(axis=0) <= 43.0 + 1e-9).all()
    assert find_fit(summary.points, (39.9, 39.9, 39.9), summary.margin_mm) is None
