"""Does a part fit a printer's build volume in some orientation?

A pure function over points (the part's convex hull, or any superset of
it) and a box. Checking the six axis-aligned orientations is not enough: a
300 mm bar fits a 250x210x220 mm printer along its 391 mm diagonal. The
search, cheapest first:

1. the model as uploaded: sorted extents within the sorted box sides fit
   after an axis permutation (the old check, now only the fast path);
2. reject what cannot fit in any orientation: a diameter longer than the
   box's diagonal, or a hull volume larger than the box's;
3. the part's minimum-volume oriented box (trimesh), permuted likewise;
4. search rotations: a fixed pseudo-random grid over SO(3) plus seeds that
   lay the part's long axis along the box's space and face diagonals, then
   Nelder-Mead (scipy) from the most promising candidates.

The objective for a rotation R is the largest overshoot max_k(e_k - b_k) of
the rotated axis-aligned extents e over the box sides b, both sorted (an
axis permutation is free). A fit is returned only after the final transform
was applied to every input point and each one checked inside the box, so a
returned Fit is always a true fit. A miss is not a proof (the search is a
heuristic); in the cases measured it missed only parts with under a
millimetre to spare (bench/fit.py: a 5x5 mm bar is placed up to 384.5 mm
long in the MK4, where brute force finds 385.0 mm).
Deterministic: fixed seeds, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist
from scipy.spatial.transform import Rotation
from trimesh.bounds import oriented_bounds

from .hull_summary import sphere_directions

GRID_ROTATIONS = 1024
ROLLS = 24  # turns about a diagonal tried for each diagonal seed
REFINED = 8  # candidates refined by Nelder-Mead
REFINE_EVALUATIONS = 400
SEARCH_POINTS = 512  # the search runs on at most this many hull points
CHUNK = 256  # rotations evaluated per batch (bounds memory)
MAX_DIAMETER_POINTS = 2000  # exact diameter (pairwise, 16 MB) up to this many points
SEED = 20261130


@dataclass(frozen=True)
class Fit:
    """`points @ rotation.T + offset` lies inside [0, box] on every axis."""

    rotation: np.ndarray  # (3, 3), proper (det +1)
    offset: np.ndarray  # (3,) mm
    extents: np.ndarray  # (3,) mm, of the placed part along the box's axes
    axis_aligned: bool  # True when the part only needed a quarter-turn or none

    def place(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) @ self.rotation.T + self.offset


def find_fit(
    points: np.ndarray, box: tuple[float, float, float], margin_mm: float = 0.0
) -> Fit | None:
    """An orientation placing all `points` in `box` with `margin_mm` to spare, or None.

    `points` is (n, 3) float64 in mm; `margin_mm` is kept free on every side
    (a hull summary's error bound, or a machine's clearance).
    """
    cloud = _checked_points(points)
    margin_mm = float(margin_mm)
    if not (np.isfinite(margin_mm) and margin_mm >= 0):
        raise ValueError("margin_mm must be finite and not negative")
    room = _checked_box(box) - 2.0 * margin_mm
    if (room < 0).any():
        return None
    straight = _verified(np.eye(3), cloud, room, margin_mm)
    if straight is not None:
        return straight  # as uploaded, or turned by quarter-turns
    hull, hull_volume = _hull(cloud)
    if _cannot_fit(hull, hull_volume, room):
        return None
    search = _search_subset(hull)
    minimum_box = _minimum_box(search)
    if minimum_box is not None:
        fit = _verified(minimum_box, cloud, room, margin_mm)
        if fit is not None:
            return fit
    for rotation in _searched(search, room):
        fit = _verified(rotation, cloud, room, margin_mm)
        if fit is not None:
            return fit
    return None


def machine_box(points: np.ndarray) -> tuple[float, float, float]:
    """The smallest box found around the part in any orientation, sorted (mm).

    What a quote prices as machine space, so that the price does not depend
    on how the file happened to be oriented when exported: the smaller of the
    as-uploaded bounding box and the minimum-volume oriented box (trimesh).
    """
    cloud = _checked_points(points)
    straight = np.sort(np.ptp(cloud, axis=0))
    hull, _ = _hull(cloud)
    rotation = _minimum_box(_search_subset(hull))
    if rotation is None:
        return _triple(straight)
    turned = np.sort(np.ptp(hull @ rotation.T, axis=0))
    best = turned if np.prod(turned) < np.prod(straight) else straight
    return _triple(best)


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _checked_points(points: np.ndarray) -> np.ndarray:
    cloud = np.asarray(points, dtype=np.float64)
    if cloud.ndim != 2 or cloud.shape[1] != 3 or not len(cloud):
        raise ValueError("points must be a non-empty (n, 3) array")
    if not np.isfinite(cloud).all():
        raise ValueError("points must be finite")
    return cloud


def _checked_box(box: tuple[float, float, float]) -> np.ndarray:
    sides = np.asarray(box, dtype=np.float64)
    if sides.shape != (3,) or not np.isfinite(sides).all() or (sides <= 0).any():
        raise ValueError("box must be three positive finite sides")
    return sides


def _hull(cloud: np.ndarray) -> tuple[np.ndarray, float]:
    """Hull vertices (centred on the box centre) and hull volume (0 when flat)."""
    centred = cloud - (cloud.min(axis=0) + cloud.max(axis=0)) / 2
    unique = np.unique(centred, axis=0)
    if len(unique) < 4:
        return unique, 0.0
    try:
        hull = ConvexHull(unique)
    except QhullError:
        return unique, 0.0  # flat or a line: every point may be extreme
    return unique[hull.vertices], float(hull.volume)


def _cannot_fit(hull: np.ndarray, hull_volume: float, room: np.ndarray) -> bool:
    if hull_volume > float(np.prod(room)):
        return True
    if len(hull) <= MAX_DIAMETER_POINTS and len(hull) > 1:
        diameter = float(pdist(hull).max())
    else:
        diameter = float(np.ptp(hull, axis=0).max())  # a lower bound of it
    return diameter > float(np.linalg.norm(room))


def _minimum_box(hull: np.ndarray) -> np.ndarray | None:
    """The rotation of the part's minimum-volume oriented box (trimesh), if any."""
    if len(hull) < 4:
        return None
    try:
        # Flat hulls make trimesh divide by a zero volume on the way.
        with np.errstate(invalid="ignore", divide="ignore"):
            to_origin, _ = oriented_bounds(hull)
    except (QhullError, ValueError, np.linalg.LinAlgError):
        return None  # degenerate (flat) hulls: the search still runs
    return _proper(to_origin[:3, :3])


def _search_subset(hull: np.ndarray) -> np.ndarray:
    """At most SEARCH_POINTS hull points: the extremes in spread directions.

    Only the search uses the subset; every fit is verified on all points.
    """
    if len(hull) <= SEARCH_POINTS:
        return hull
    directions = sphere_directions(SEARCH_POINTS)
    keep = np.unique(np.argmax(hull @ directions.T, axis=0))
    return hull[keep]


def _searched(points: np.ndarray, room: np.ndarray) -> list[np.ndarray]:
    """Rotations worth verifying, best first; empty when none came close."""
    seeds = np.concatenate([_grid(), _diagonal_seeds(points, room)])
    scores = _overshoot_many(seeds, points, room)
    best = np.argsort(scores, kind="stable")
    if scores[best[0]] <= 0:
        return [seeds[i] for i in best[:3]]
    found = []
    for index in best[:REFINED]:
        rotation, score = _refine(seeds[index], points, room)
        if score <= 0:
            found.append(rotation)
            break
    return found


def _grid() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return Rotation.random(GRID_ROTATIONS, rng=rng).as_matrix()


def _diagonal_seeds(points: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Rotations laying the part's long axis along box diagonals, with rolls."""
    axis = _long_axis(points)
    b = np.sort(room)
    diagonals = [b, [b[0], b[1], 0.0], [b[0], 0.0, b[2]], [0.0, b[1], b[2]]]
    rolls = Rotation.from_rotvec(
        np.outer(np.linspace(0, 2 * np.pi, ROLLS, endpoint=False), [1.0, 0.0, 0.0])
    )
    seeds = []
    for diagonal in diagonals:
        vector = np.asarray(diagonal, dtype=np.float64)
        target = vector / np.linalg.norm(vector)
        # Roll about the part's axis first, then lay that axis on the diagonal.
        to_x = _align(axis, np.array([1.0, 0.0, 0.0]))
        onto = _align(np.array([1.0, 0.0, 0.0]), target)
        seeds.append((onto * rolls * to_x).as_matrix())
    return np.concatenate(seeds)


def _long_axis(points: np.ndarray) -> np.ndarray:
    if len(points) < 2:
        return np.array([1.0, 0.0, 0.0])
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[0]


def _align(a: np.ndarray, b: np.ndarray) -> Rotation:
    """The rotation turning unit vector a onto unit vector b."""
    cross = np.cross(a, b)
    sin, cos = float(np.linalg.norm(cross)), float(np.dot(a, b))
    if sin < 1e-12:
        if cos > 0:
            return Rotation.identity()
        helper = np.array([0.0, 1.0, 0.0]) if abs(a[0]) > 0.9 else np.array([1.0, 0.0, 0.0])
        perpendicular = np.cross(a, helper)
        return Rotation.from_rotvec(np.pi * perpendicular / np.linalg.norm(perpendicular))
    return Rotation.from_rotvec(cross / sin * np.arctan2(sin, cos))


def _refine(start: np.ndarray, points: np.ndarray, room: np.ndarray) -> tuple[np.ndarray, float]:
    """Nelder-Mead over small rotations composed with `start`."""

    def overshoot(vector: np.ndarray) -> float:
        rotation = _rotvec_matrix(vector) @ start
        return float(_overshoot_many(rotation[None], points, room)[0])

    result = minimize(
        overshoot,
        np.zeros(3),
        method="Nelder-Mead",
        options={
            "maxfev": REFINE_EVALUATIONS,
            "xatol": 1e-7,
            "fatol": 1e-9,
            "initial_simplex": np.vstack([np.zeros(3), 0.15 * np.eye(3)]),
        },
    )
    rotation = _rotvec_matrix(result.x) @ start
    return rotation, float(result.fun)


def _rotvec_matrix(vector: np.ndarray) -> np.ndarray:
    """Rodrigues' formula (scipy's Rotation costs more than the evaluation itself)."""
    angle = float(np.linalg.norm(vector))
    if angle < 1e-15:
        return np.eye(3)
    x, y, z = vector / angle
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def _overshoot_many(rotations: np.ndarray, points: np.ndarray, room: np.ndarray) -> np.ndarray:
    """max_k(sorted extents - sorted room) for each rotation: <= 0 means it fits."""
    room_sorted = np.sort(room)
    out = np.empty(len(rotations))
    for start in range(0, len(rotations), CHUNK):
        rotated = rotations[start : start + CHUNK] @ points.T  # (c, 3, n)
        extents = np.sort(rotated.max(axis=2) - rotated.min(axis=2), axis=1)
        out[start : start + CHUNK] = (extents - room_sorted).max(axis=1)
    return out


def _verified(
    rotation: np.ndarray, cloud: np.ndarray, room: np.ndarray, margin: float
) -> Fit | None:
    """Place every point with `rotation` and an axis permutation; None unless all fit."""
    rotated = cloud @ rotation.T
    extents = rotated.max(axis=0) - rotated.min(axis=0)
    # Longest extent to the longest side, and so on.
    permutation = np.zeros((3, 3))
    permutation[np.argsort(room, kind="stable"), np.argsort(extents, kind="stable")] = 1.0
    turn = _proper(permutation) @ rotation
    placed = cloud @ turn.T
    offset = margin - placed.min(axis=0)
    placed = placed + offset
    placed_extents = placed.max(axis=0) - placed.min(axis=0)
    inside = (placed >= 0).all() and (placed <= room + 2.0 * margin).all()
    if not (inside and (placed_extents <= room).all()):
        return None
    return Fit(
        rotation=turn,
        offset=offset,
        extents=placed_extents,
        axis_aligned=bool(np.isclose(np.abs(turn), np.round(np.abs(turn)), atol=1e-12).all()),
    )


def _proper(matrix: np.ndarray) -> np.ndarray:
    """Flip one axis of an orthogonal matrix if needed so that it is a rotation.

    Flipping an axis mirrors the part's placement along it, which leaves its
    extents unchanged, so a fit stays a fit.
    """
    if np.linalg.det(matrix) < 0:
        matrix = matrix.copy()
        matrix[0] *= -1
    return matrix
