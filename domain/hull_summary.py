"""A small convex-hull summary of a part: what the fit check needs, stored.

The build-volume check (`domain.fit`) needs the part's shape, not only its
three axis-aligned sizes: whether a part fits diagonally depends on its
convex hull. A hull can have many thousand vertices, so the analysis keeps
at most `MAX_POINTS` of them (the extremes in spread directions, then the
vertices farthest outside what was kept) and measures how far the dropped
ones stick out of the kept points' hull: `margin_mm`. The fit check keeps
that margin free on every side, so a fit of the summary is a fit of the part.

Hull points describe an unreleased design's envelope: they are customer data
and must be stored sealed like the file itself (see docs/pricing.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from trimesh.triangles import closest_point

MAX_POINTS = 512
# Meshes with more vertices are first snapped to a grid of at most GRID_CELLS cells.
SNAP_ABOVE = 20_000
GRID_CELLS = 4096
# Rounds of adding the vertices farthest outside (each rebuilds a hull).
MAX_ROUNDS = 4
# Facets tried per dropped vertex when bounding its distance to the kept hull.
FACETS_PER_POINT = 4
# Vertices per block of plane distances (keeps the block in cache).
CHUNK = 256


@dataclass(frozen=True)
class HullSummary:
    points: np.ndarray  # (k, 3) float64, mm, k <= MAX_POINTS
    margin_mm: float  # every point of the part lies within this of hull(points)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; floats keep full precision through JSON (repr round-trips)."""
        return {"points": self.points.tolist(), "margin_mm": self.margin_mm}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HullSummary:
        points = np.asarray(values["points"], dtype=np.float64).reshape(-1, 3)
        margin = float(values["margin_mm"])
        if not len(points) or not np.isfinite(points).all() or not margin >= 0:
            raise ValueError("invalid hull summary")
        return cls(points, margin)

    @classmethod
    def from_dimensions(cls, x: float, y: float, z: float) -> HullSummary:
        """The bounding box's corners: a superset of the part (for analyses
        made before hulls were stored). Sound, but misses fits that need the
        part's own shape."""
        if not all(np.isfinite(v) and v >= 0 for v in (x, y, z)):
            raise ValueError("dimensions must be finite and not negative")
        corners = np.array([[i, j, k] for i in (0, x) for j in (0, y) for k in (0, z)], float)
        return cls(corners, 0.0)


def summarise_hull(vertices: np.ndarray, max_points: int = MAX_POINTS) -> HullSummary:
    """Summarise a part's vertices (n, 3) in mm as at most `max_points` hull points."""
    cloud = np.asarray(vertices, dtype=np.float64)
    if cloud.ndim != 2 or cloud.shape[1] != 3 or not len(cloud) or not np.isfinite(cloud).all():
        raise ValueError("vertices must be a non-empty finite (n, 3) array")
    if max_points < 8:
        raise ValueError("max_points must be at least 8")
    cloud, snapped = _snap_to_grid(cloud)
    hull, flatness = _hull_vertices(cloud)
    if len(hull) <= max_points:
        return HullSummary(hull, flatness + snapped)
    kept = np.unique(np.argmax(hull @ sphere_directions(max_points // 2).T, axis=0))
    kept = _add_farthest(hull, kept, max_points)
    return HullSummary(hull[kept], flatness + snapped + _margin(hull, kept))


def _snap_to_grid(cloud: np.ndarray) -> tuple[np.ndarray, float]:
    """Large meshes: the centres of the grid cells their vertices occupy (at most
    GRID_CELLS), and how far a vertex may lie from its centre (half a cell diagonal).

    Why: the hull's cost grows with the vertices on it, and on a finely tessellated
    round part they all are (qhull alone takes 10 s for a 1.3 M-triangle sphere). The
    summary stays sound: the distance joins the margin the fit check keeps free."""
    if len(cloud) <= SNAP_ABOVE:
        return cloud, 0.0
    lower = cloud.min(axis=0)
    cell = max(float(np.linalg.norm(np.ptp(cloud, axis=0))) / 256, 1e-9)
    # The cell size is searched on every k-th vertex first (a sample occupies no
    # more cells than the whole), so the whole cloud is binned once or twice, not
    # once per round: 0.29 -> 0.08 s on a 1.3 M-triangle sphere.
    sample = cloud[:: max(1, len(cloud) // SNAP_ABOVE)]
    cell, _ = _grid(sample, lower, cell)
    cell, occupied = _grid(cloud, lower, cell)
    return lower + (occupied + 0.5) * cell, cell * float(np.sqrt(3.0)) / 2


def _grid(cloud: np.ndarray, lower: np.ndarray, cell: float) -> tuple[float, np.ndarray]:
    """The first cell size from `cell` up (growing by half) at which `cloud` occupies
    at most GRID_CELLS cells, and those cells."""
    for _ in range(64):  # bounded: each round grows the cell by half
        index = np.floor((cloud - lower) / cell).astype(np.int64)
        occupied = _unique_rows(index)
        if len(occupied) <= GRID_CELLS:
            break
        cell *= 1.5
    return cell, occupied


def _unique_rows(index: np.ndarray) -> np.ndarray:
    """Unique integer rows through one int64 key per row (faster than unique(axis=0))."""
    sizes = index.max(axis=0) + 1
    keys = (index[:, 0] * sizes[1] + index[:, 1]) * sizes[2] + index[:, 2]
    unique = np.unique(keys)
    z = unique % sizes[2]
    y = (unique // sizes[2]) % sizes[1]
    x = unique // (sizes[1] * sizes[2])
    return np.stack([x, y, z], axis=1)


def _hull_vertices(cloud: np.ndarray) -> tuple[np.ndarray, float]:
    """Hull vertices, and how far the part may stray from their hull (0 unless flat)."""
    unique = np.unique(cloud, axis=0)
    if len(unique) < 4:
        return unique, 0.0
    try:
        return unique[ConvexHull(unique).vertices], 0.0
    except QhullError:
        return _extremes_of_flat(unique)


def _extremes_of_flat(points: np.ndarray) -> tuple[np.ndarray, float]:
    """A flat or straight part (no 3-D hull): its 2-D hull in its own plane, or its
    two ends, and the largest distance of a point from that plane or line (points
    qhull calls coplanar may still be off it by rounding)."""
    centre = points.mean(axis=0)
    _, singular, vt = np.linalg.svd(points - centre, full_matrices=False)
    offsets = points - centre
    if singular[1] <= singular[0] * 1e-12:
        along = offsets @ vt[0]
        off_line = np.linalg.norm(offsets - np.outer(along, vt[0]), axis=1).max()
        ends = points[[int(np.argmin(along)), int(np.argmax(along))]]
        return ends, float(off_line)
    off_plane = float(np.abs(offsets @ vt[2]).max())
    try:
        return points[ConvexHull(offsets @ vt[:2].T).vertices], off_plane
    except QhullError:
        return points, 0.0


def _add_farthest(hull: np.ndarray, kept: np.ndarray, max_points: int) -> np.ndarray:
    """Fill the budget with the vertices that stick out most of the kept hull."""
    for _ in range(MAX_ROUNDS):
        if len(kept) >= max_points:
            break
        outside = _outside_distance(hull, kept)
        order = np.argsort(-outside, kind="stable")
        order = order[outside[order] > 0][: max(1, (max_points - len(kept)) // 2)]
        if not len(order):
            break
        kept = np.unique(np.concatenate([kept, order[: max_points - len(kept)]]))
    return kept


def _outside_distance(hull: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Per hull vertex: how far beyond the kept hull's facet planes (0 inside)."""
    try:
        facets = ConvexHull(hull[kept]).equations  # (f, 4): normal, offset
    except QhullError:
        return np.full(len(hull), np.inf)
    distance = np.concatenate([ahead.max(axis=1) for _, ahead in _ahead(hull, facets)])
    distance[kept] = 0.0
    return np.maximum(distance, 0.0)


def _margin(hull: np.ndarray, kept: np.ndarray) -> float:
    """An upper bound of the largest distance from a dropped vertex to the kept hull.

    The distance to a triangle of the kept hull's surface bounds the distance
    to the hull from above; the nearest point lies on a facet the vertex is in
    front of, so trying the few facets it is farthest in front of is usually tight.
    """
    try:
        kept_hull = ConvexHull(hull[kept])
    except QhullError:
        return float(np.ptp(hull, axis=0).max())  # degenerate: bound by the whole size
    facets = kept_hull.equations
    triangles = hull[kept][kept_hull.simplices]  # (f, 3, 3)
    count = min(FACETS_PER_POINT, len(facets))
    worst = 0.0
    for rows, ahead in _ahead(hull, facets):
        outside = np.flatnonzero(ahead.max(axis=1) > 0)
        if not len(outside):
            continue
        tried = np.argpartition(-ahead[outside], count - 1, axis=1)[:, :count]
        points = np.repeat(hull[rows][outside], count, axis=0)
        nearest = closest_point(triangles[tried.ravel()], points)
        distance = np.linalg.norm(nearest - points, axis=1).reshape(-1, count).min(axis=1)
        worst = max(worst, float(distance.max()))
    return worst


def _ahead(points: np.ndarray, facets: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Signed distances of points to facet planes, a cache-sized block at a time."""
    normals, offsets = np.ascontiguousarray(facets[:, :3].T), facets[:, 3]
    for start in range(0, len(points), CHUNK):
        rows = slice(start, start + CHUNK)
        yield rows, points[rows] @ normals + offsets


def sphere_directions(count: int) -> np.ndarray:
    """`count` evenly spread unit vectors (a Fibonacci lattice)."""
    index = np.arange(count) + 0.5
    polar = np.arccos(1 - 2 * index / count)
    azimuth = np.pi * (1 + 5**0.5) * index
    return np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1
    )
