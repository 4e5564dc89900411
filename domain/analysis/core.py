"""`analyse`: from a file's bytes to its ModelMetadata, in this process.

Run it through `sandbox.run_isolated` for uploads: parsers of hostile files
can take unbounded time or memory, and only a separate process can be
stopped safely.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from ..formats import FORMATS
from ..hull_summary import summarise_hull
from ..manufacturability import WallProfile
from .bodies import find_bodies
from .checks import Facts, Overlap, printability_issues
from .cracks import close_cracks, weld_tolerance
from .edges import collapsed_faces, edge_facts
from .errors import AnalysisFailed
from .geometry import Geometry, measure
from .loaders import load_corners
from .loaders.limits import check_triangle_count
from .options import AnalysisOptions
from .orientation import orient
from .report import Dimensions, FirstReport, MeshReport, Printability
from .thickness import Thickness, wall_thickness
from .union import printed_solid
from .weld import weld

MAX_COORDINATE_MM = 1e9
# A CAD file's exact volume replaces the mesh's only if they agree this well.
EXACT_AGREEMENT = 1e-2


# Checks that may finish after the first report (`analyse(on_first=...)`).
THIN_WALLS_CHECK = "THIN_WALLS"

def analyse(
    data: bytes | bytearray,
    file_name: str,
    fmt: str,
    options: AnalysisOptions,
    *,
    consume: bool = False,
    on_first: FirstReport | None = None,
) -> MeshReport:
    """Measure a mesh and judge its printability; raise AnalysisFailed if unusable.

    `consume`: the caller hands a bytearray over; it is emptied as soon as the
    triangles are welded, so the file's memory is free for the rest (the
    analysis child's peak on a 5 M-triangle STL: the file is 250 MB of it).

    `on_first`: called with a report that lacks only the wall-thickness check
    (`pending_checks == ("THIN_WALLS",)`) before that check runs; the returned
    report is the complete one. Sampling thousands of rays is most of the time a
    CAD part takes, and everything else a customer looks at first (size, volume,
    holes) does not need it. Not called when there are no walls to check.
    """
    # NaN and infinities are detected and refused explicitly (in `measure`);
    # numpy's warnings about them on the way would only be noise.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _analyse(data, file_name, fmt, options, consume, on_first)


def _analyse(
    data: bytes | bytearray,
    file_name: str,
    fmt: str,
    options: AnalysisOptions,
    consume: bool,
    on_first: FirstReport | None,
) -> MeshReport:
    file_size = len(data)
    if not file_size:
        raise AnalysisFailed("The file is empty.")
    corners, exact = load_corners(data, fmt, options)
    if not len(corners):
        raise AnalysisFailed("The file contains no triangles.")
    check_triangle_count(len(corners), options.max_triangles)
    single = single_precision(fmt, corners)
    # `_examine` holds the only reference to the soup, so it can drop it.
    soup = [corners]
    del corners
    release = _releaser(data) if consume else _keep
    facts, vertices, walls = _examine(soup, single, release)
    hull = summarise_hull(vertices).to_dict()
    del vertices
    if exact is not None:
        facts = _with_exact(facts, exact)
    report = partial(_report, facts, options, file_name, file_size, fmt, hull)
    if walls is None:
        return report()
    if on_first is not None:
        on_first(report(pending=(THIN_WALLS_CHECK,)))
    facts = replace(facts, thickness=walls.measure(options))
    return _report(facts, options, file_name, file_size, fmt, hull)


def _report(
    facts: Facts,
    options: AnalysisOptions,
    file_name: str,
    file_size: int,
    fmt: str,
    hull: dict,
    pending: tuple[str, ...] = (),
) -> MeshReport:
    issues = printability_issues(
        facts,
        options.min_wall_thickness_mm,
        options.build_volume_mm,
        options.thin_wall_error_fraction,
        walls_pending=THIN_WALLS_CHECK in pending,
    )
    x, y, z = (float(v) for v in facts.size)
    return MeshReport(
        file_name=file_name,
        file_size=file_size,
        format=fmt,
        dimensions=Dimensions(x, y, z),
        volume=facts.volume,
        surface_area=facts.area,
        triangle_count=facts.triangles,
        body_count=facts.bodies,
        is_watertight=facts.edges.watertight,
        printability=Printability.from_issues(issues, pending),
        weld_tolerance_mm=facts.weld_tolerance,
        hull=hull,
        walls=_wall_profile(facts.thickness),
    )


@dataclass(frozen=True)
class _Walls:
    """The closed, outward-wound surface whose walls are to be measured."""

    vertices: np.ndarray
    faces: np.ndarray
    geometry: Geometry

    def measure(self, options: AnalysisOptions) -> Thickness:
        return _thickness(self.vertices, self.faces, self.geometry, options)


def _wall_profile(thickness: Thickness | None) -> dict | None:
    """The rays' walls up to the probe distance, for the per-material check of a quote."""
    if thickness is None or thickness.distance is None or thickness.weighted is None:
        return None
    profile = WallProfile.from_rays(thickness.distance, thickness.weighted, thickness.probe)
    return profile.to_dict()


def single_precision(fmt: str, corners: np.ndarray) -> bool:
    """Were the coordinates stored as float32 (binary STL, GLB/glTF buffers)?"""
    known = FORMATS.get(fmt)
    return corners.dtype == np.float32 or (known is not None and known.single_precision)


def _keep() -> None:
    pass


def _releaser(data: bytes | bytearray):
    def release() -> None:
        # A loader's view still alive (BufferError) keeps the buffer: harmless.
        if isinstance(data, bytearray):
            with contextlib.suppress(BufferError):
                data.clear()  # frees the buffer: nothing views it any more

    return release


def _examine(
    soup: list[np.ndarray], single: bool, release
) -> tuple[Facts, np.ndarray, _Walls | None]:
    """The facts but the walls, the welded vertices (for the hull summary), and the
    surface whose walls are to be measured (None when "inward" is undefined)."""
    corners = soup.pop()
    geometry = measure(corners)
    _check_extent(geometry)
    # One work array for the two big sorts: less peak memory, and fresh pages
    # cost more to fault in than the sorting itself.
    scratch = np.empty(3 * len(corners), dtype=np.int64)
    vertices, faces = weld(corners, scratch=scratch)
    # Everything from here on works on the welded mesh.
    del corners
    release()
    collapsed = collapsed_faces(faces)
    edges = edge_facts(faces, len(vertices), collapsed, scratch=scratch)
    tolerance = weld_tolerance(geometry.lower, geometry.upper, single)
    joined = None
    if edges.open_edges:
        joined = close_cracks(vertices, faces, edges.open_vertices, tolerance)
        if joined.corners:
            faces = joined.faces
            collapsed = collapsed_faces(faces)
            edges = edge_facts(faces, len(vertices), collapsed, scratch=scratch)
    del scratch
    bodies = find_bodies(len(faces), edges, collapsed)
    orientation = orient(
        geometry.face_volume, edges, bodies, ~collapsed, lambda ids: vertices[faces[ids]]
    )
    walls, solid = None, None
    # "Inward" is only defined for a closed surface that can face outwards.
    if edges.watertight and orientation.orientable:
        outward = _outward(faces, orientation.flipped)
        if bodies.count > 1:
            signed = geometry.face_volume
            if orientation.flipped is not None:
                signed = np.where(orientation.flipped, -signed, signed)
            solid = printed_solid(vertices, outward, signed, bodies.label, ~collapsed)
        if solid is None:
            walls = _Walls(vertices, outward, geometry)
        else:
            # Walls of what is printed: rays inside one shell would meet the other.
            union_geometry = measure(solid.vertices[solid.faces])
            walls = _Walls(solid.vertices, solid.faces, union_geometry)
    facts = Facts(
        triangles=len(faces),
        degenerate=int((collapsed | geometry.flat).sum()),
        size=geometry.size,
        area=float(geometry.face_area.sum()),
        edges=edges,
        bodies=bodies.count,
        orientation=orientation,
        thickness=None,  # measured last (see `analyse`)
        weld_tolerance=tolerance,
        volume=orientation.volume if solid is None else solid.volume,
        overlap=None if solid is None else Overlap(solid.overlapping, orientation.volume),
        joined=joined if joined is not None and joined.corners else None,
    )
    return facts, vertices, walls


def _with_exact(facts: Facts, exact) -> Facts:
    """Take a CAD file's exact volume and area when its mesh is the same solid:
    closed, as many bodies as solids, no overlap to unite, volumes agreeing
    within the tessellation's reach."""
    agrees = abs(facts.volume - exact.volume) <= EXACT_AGREEMENT * abs(exact.volume)
    if facts.edges.watertight and facts.overlap is None and facts.bodies == exact.solids and agrees:
        return replace(facts, volume=exact.volume, area=exact.area)
    return facts


def _check_extent(geometry: Geometry) -> None:
    # Far beyond any printer; also keeps every later computation finite.
    if max(np.abs(geometry.lower).max(), np.abs(geometry.upper).max()) > MAX_COORDINATE_MM:
        raise AnalysisFailed("The model's coordinates are too large (beyond 1000 km).")


def _outward(faces: np.ndarray, flipped: np.ndarray | None) -> np.ndarray:
    """`flipped` marks triangles to turn round to face outwards."""
    if flipped is None:
        return faces
    return np.where(flipped[:, None], faces[:, [0, 2, 1]], faces)


def _thickness(
    vertices: np.ndarray, faces: np.ndarray, geometry: Geometry, options: AnalysisOptions
) -> Thickness:
    """Thin-wall check on a closed surface wound outwards."""
    return wall_thickness(
        vertices,
        faces,
        geometry.face_area,
        geometry.reach,
        options.min_wall_thickness_mm,
        options.wall_thickness_samples,
        options.sampling_seed,
        options.wall_probe_mm,
    )
