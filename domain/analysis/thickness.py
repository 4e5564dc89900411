"""Thin walls: rays cast inwards from sampled points of the surface.

A point is on a thin wall when the ray from it along the inward normal
meets the surface again within the minimum thickness. Only that question is
asked (never "how thick is this part"), so a ray is only tested against the
triangles that could be that close: triangles are bucketed by their first
corner in a uniform grid, a ray looks up the cells around its tested segment,
and a cheap cylinder test discards most candidates before the exact
Möller-Trumbore test. The few largest triangles are tested against every ray.

That grid is fast when triangles are small next to the minimum thickness
(scans, fine tessellations: 1.3 M triangles in 0.1 s). CAD exports are the
opposite: long slivers spanning the part, so every ray meets most triangles
in its cells (featuretype.STL: 7 M pairs, 0.7 s). Those meshes, and any of up
to BVH_MAX_TRIANGLES, go to manifold3d's ray caster instead (a BVH in C++:
3,476 triangles in 10 ms), which also serves the union of overlapping bodies.

Sampling is seeded, so the same file always gets the same answer. Memory is
bounded by testing ray/triangle pairs in batches; time by a cap on the
number of pairs (rays beyond it are left untested).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# The largest triangles, tested against every ray, so that one big triangle
# does not inflate the grid cells for all the others.
MAX_LARGE_TRIANGLES = 256
MAX_GRID_CELLS = 1 << 24
# Grid cells across a ray's query box: finer cells, fewer wasted candidates.
CELLS_PER_BOX = 3
PAIR_BATCH = 1 << 16
MAX_PAIRS = 1 << 24
# Meshes up to this size are ray-cast through manifold3d's BVH; beyond, its
# construction (about 2 s per million triangles) costs more than the grid.
BVH_MAX_TRIANGLES = 400_000
# Sample points keep off triangle edges, where a ray could clip the
# neighbouring triangle through rounding.
INSET = 0.98


@dataclass(frozen=True)
class Thickness:
    samples: int  # rays actually tested
    thin_samples: int  # rays that met the surface again within the threshold
    thin_fraction: float  # estimated share of the surface area that is thin
    minimum: float  # thinnest wall seen, mm (inf when none is thin)
    # Per ray: the wall met within the probe distance (inf if none), and whether the
    # ray was drawn by area; kept so a quote can judge any material's minimum later.
    distance: np.ndarray | None = None
    weighted: np.ndarray | None = None
    probe: float = 0.0


@dataclass(frozen=True)
class _Rays:
    origin: np.ndarray  # (k, 3)
    direction: np.ndarray  # (k, 3) unit, pointing into the material
    face: np.ndarray  # (k,) triangle each ray starts on
    weighted: np.ndarray  # (k,) drawn in proportion to area


def wall_thickness(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_area: np.ndarray,
    reach: np.ndarray,
    threshold: float,
    samples: int,
    seed: int,
    probe: float = 0.0,
) -> Thickness:
    """`faces` must be oriented outwards; `reach` is `Geometry.reach`. Rays go as far
    as `probe` when it exceeds `threshold` (the walls a quote may judge later)."""
    reach_mm = max(threshold, probe)
    rays = _sample(vertices, faces, face_area, samples if reach_mm > 0 else 0, seed)
    if not len(rays.face):
        return Thickness(0, 0, 0.0, float("inf"))
    distance = None
    if len(faces) <= BVH_MAX_TRIANGLES:
        distance = _bvh_hits(vertices, faces, rays, reach_mm)
    if distance is None:
        distance = _first_hits(vertices, faces, reach, rays, reach_mm)
    thin = distance <= threshold
    weighted = rays.weighted[: len(distance)]
    return Thickness(
        samples=len(distance),
        thin_samples=int(thin.sum()),
        thin_fraction=float((thin & weighted).sum() / max(int(weighted.sum()), 1)),
        minimum=float(distance[thin].min()) if thin.any() else float("inf"),
        distance=distance,
        weighted=weighted,
        probe=reach_mm,
    )


def _sample(
    vertices: np.ndarray, faces: np.ndarray, face_area: np.ndarray, samples: int, seed: int
) -> _Rays:
    """Half the rays in proportion to area (they estimate the thin share of
    the surface), half uniformly over triangles (small triangles often mean
    fine detail, which is where walls get thin)."""
    rng = np.random.default_rng(seed)
    if samples <= 0 or not (face_area > 0).any():
        none = np.empty((0, 3))
        return _Rays(none, none, np.empty(0, dtype=np.int64), np.empty(0, dtype=bool))
    by_area = samples - samples // 2
    cumulative = np.cumsum(face_area)  # zero-area triangles are never drawn
    drawn = np.searchsorted(cumulative, rng.random(by_area) * cumulative[-1], side="right")
    picked = np.concatenate(
        [np.minimum(drawn, len(faces) - 1), _uniform(face_area, samples // 2, rng)]
    )
    corners = vertices[faces[picked]]  # (k, 3, 3)
    # A uniform point in the triangle, pulled slightly towards its centroid.
    r1, r2 = np.sqrt(rng.random(len(picked))), rng.random(len(picked))
    weights = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1) * INSET + (1 - INSET) / 3
    origin = np.einsum("kc,kcj->kj", weights, corners)
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return _Rays(origin, -normal, picked, np.arange(len(picked)) < by_area)


def _uniform(face_area: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` triangles drawn uniformly among those with an area."""
    # Draw among all and drop the flat ones: no index array over the whole
    # mesh unless flat triangles are so common that this would not converge.
    draw = rng.integers(0, len(face_area), 2 * count)
    picked = draw[face_area[draw] > 0]
    if len(picked) < count:
        usable = np.flatnonzero(face_area > 0)
        picked = usable[rng.integers(0, len(usable), count)]
    return picked[:count]


def _first_hits(
    vertices: np.ndarray, faces: np.ndarray, reach: np.ndarray, rays: _Rays, threshold: float
) -> np.ndarray:
    """Distance to the nearest surface each ray meets within `threshold`, else inf."""
    small_reach = _small_reach(reach, threshold)
    grid = _Grid(rays, threshold, small_reach)
    nearby, cells = grid.bucket(vertices, faces, reach <= small_reach)
    large = np.flatnonzero(reach > small_reach)
    distance = np.full(len(rays.face), np.inf)
    tested = 0
    for first, ray_ids, tri_ids in _pairs(grid, cells, nearby, large):
        tested += len(ray_ids)
        if tested > MAX_PAIRS:
            return distance[:first]  # the rays before `first` were fully tested
        for start in range(0, len(ray_ids), PAIR_BATCH):
            r, t = ray_ids[start : start + PAIR_BATCH], tri_ids[start : start + PAIR_BATCH]
            r, t = _near_ray(rays, r, t, vertices[faces[t, 0]], reach, threshold)
            _intersect(vertices, faces, rays, r, t, threshold, distance)
    return distance


def _bvh_hits(
    vertices: np.ndarray, faces: np.ndarray, rays: _Rays, threshold: float
) -> np.ndarray | None:
    """Distance to the first surface each ray meets within `threshold`, through
    manifold3d; None when it does not take the mesh (it must be a closed
    oriented 2-manifold)."""
    from manifold3d import Manifold, Mesh64

    used, local = np.unique(faces, return_inverse=True)
    solid = Manifold(
        Mesh64(
            vert_properties=np.ascontiguousarray(vertices[used], dtype=np.float64),
            tri_verts=np.ascontiguousarray(local.reshape(-1, 3), dtype=np.uint64),
        )
    )
    if solid.status().name != "NoError" or solid.is_empty():
        return None
    ends = rays.origin + threshold * rays.direction
    distance = np.full(len(rays.face), np.inf)
    for index, (start, end) in enumerate(zip(rays.origin.tolist(), ends.tolist(), strict=True)):
        for hit in solid.ray_cast(start, end):
            # The ray's own triangle, at its origin, is not a wall.
            if hit.distance > 1e-9:
                distance[index] = hit.distance * threshold
                break
    return distance


def _small_reach(reach: np.ndarray, threshold: float) -> float:
    """Reach below which triangles go in the grid; at most MAX_LARGE_TRIANGLES exceed it."""
    if len(reach) <= MAX_LARGE_TRIANGLES:
        return 0.0  # so few triangles that testing them all is cheapest
    largest = float(reach.max())
    if largest <= threshold:
        return largest  # finely tessellated: no triangle inflates the grid
    kth = len(reach) - MAX_LARGE_TRIANGLES - 1
    return float(np.partition(reach, kth)[kth])


class _Grid:
    """Uniform grid of cells with integer keys, around the rays.

    Each ray queries the cells overlapping the box around its tested
    segment (origin to origin + threshold * direction) grown by the small
    triangles' reach: a small triangle the segment meets has its first
    corner in that box.
    """

    def __init__(self, rays: _Rays, threshold: float, small_reach: float) -> None:
        margin = small_reach * (1 + 1e-6) + 1e-9
        ends = rays.origin + threshold * rays.direction
        box_lo = np.minimum(rays.origin, ends) - margin
        box_hi = np.maximum(rays.origin, ends) + margin
        self.lower = box_lo.min(axis=0)
        span = box_hi.max(axis=0) - self.lower
        cell = (threshold + 2 * margin) / CELLS_PER_BOX
        # Coarser cells if the rays are spread over too many of them.
        self.cell = max(cell, float(np.prod(span) / MAX_GRID_CELLS) ** (1 / 3), 1e-12)
        self.shape = np.floor(span / self.cell).astype(np.int64) + 1
        first = self._coords(box_lo)
        extent = self._coords(box_hi) - first  # cells beyond the first, per axis
        width = int(extent.max()) + 1
        offsets = np.stack(np.meshgrid(*[np.arange(width)] * 3, indexing="ij"), -1).reshape(-1, 3)
        inside = (offsets[None, :, :] <= extent[:, None, :]).all(axis=2)
        self.queries = np.where(inside, self._key(first[:, None, :] + offsets), -1)

    def _coords(self, points: np.ndarray) -> np.ndarray:
        coords = np.floor((points - self.lower) / self.cell).astype(np.int64)
        return np.clip(coords, 0, self.shape - 1)

    def _key(self, coords: np.ndarray) -> np.ndarray:
        return (coords[..., 0] * self.shape[1] + coords[..., 1]) * self.shape[2] + coords[..., 2]

    def bucket(
        self, vertices: np.ndarray, faces: np.ndarray, small: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Small triangles whose first corner is in a queried cell, sorted by cell."""
        wanted = np.zeros(int(np.prod(self.shape)), dtype=bool)
        wanted[self.queries[self.queries >= 0]] = True
        cell, inside = self._vertex_cells(vertices)
        cell[~inside] = 0
        inside &= wanted[cell]
        anchor = faces[:, 0]
        ids = np.flatnonzero(inside[anchor] & small)
        cells = cell[anchor[ids]]
        order = np.argsort(cells, kind="stable")
        return ids[order], cells[order]

    def _vertex_cells(self, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell key of every vertex, and whether it lies in the grid at all.

        Axis by axis into reused arrays: this runs over every vertex of the
        mesh, so temporaries would cost more than the arithmetic.
        """
        key = np.zeros(len(vertices), dtype=np.int64)
        inside = np.ones(len(vertices), dtype=bool)
        coordinate = np.empty(len(vertices))
        index = np.empty(len(vertices), dtype=np.int64)
        strides = (self.shape[1] * self.shape[2], self.shape[2], 1)
        for axis, stride in enumerate(strides):
            np.subtract(vertices[:, axis], self.lower[axis], out=coordinate)
            coordinate /= self.cell
            np.floor(coordinate, out=coordinate)
            inside &= coordinate >= 0
            inside &= coordinate < self.shape[axis]
            np.copyto(index, coordinate, casting="unsafe")
            index *= stride
            key += index
        return key, inside


def _pairs(
    grid: _Grid, cells: np.ndarray, nearby: np.ndarray, large: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (first ray, ray ids, triangle ids) batches of candidate pairs."""
    queries = grid.queries
    lo = np.searchsorted(cells, queries, side="left")
    hi = np.searchsorted(cells, queries, side="right")
    hi[queries < 0] = lo[queries < 0]
    rays, width = queries.shape
    per_ray = int((hi - lo).sum(axis=1).max()) + len(large)
    step = max(1, PAIR_BATCH // max(per_ray, 1))
    for first in range(0, rays, step):
        ids = np.arange(first, min(first + step, rays))
        counts = (hi[ids] - lo[ids]).ravel()
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        triangles = nearby[np.repeat(lo[ids].ravel(), counts) + offsets]
        owners = np.repeat(np.repeat(ids, width), counts)
        yield (
            first,
            np.concatenate([owners, np.repeat(ids, len(large))]),
            np.concatenate([triangles, np.tile(large, len(ids))]),
        )


def _near_ray(
    rays: _Rays,
    ray_ids: np.ndarray,
    tri_ids: np.ndarray,
    anchor: np.ndarray,
    reach: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep pairs whose triangle can touch the ray's tested segment.

    The triangle lies within `reach` of its first corner, so that corner must
    be within `reach` of the segment: a cheap cylinder test that discards
    most candidates before the full intersection test.
    """
    offset = anchor - rays.origin[ray_ids]
    along = np.einsum("ij,ij->i", offset, rays.direction[ray_ids])
    across = np.einsum("ij,ij->i", offset, offset) - along * along
    radius = reach[tri_ids].astype(np.float64) * (1 + 1e-6) + 1e-9
    keep = (across <= radius * radius) & (along >= -radius) & (along <= threshold + radius)
    keep &= tri_ids != rays.face[ray_ids]  # never the triangle the ray starts on
    return ray_ids[keep], tri_ids[keep]


def _intersect(
    vertices: np.ndarray,
    faces: np.ndarray,
    rays: _Rays,
    ray_ids: np.ndarray,
    tri_ids: np.ndarray,
    threshold: float,
    distance: np.ndarray,
) -> None:
    """Möller-Trumbore on each (ray, triangle) pair; keep each ray's nearest hit."""
    if not len(ray_ids):
        return
    corners = vertices[faces[tri_ids]]
    origin, direction = rays.origin[ray_ids], rays.direction[ray_ids]
    e1 = corners[:, 1] - corners[:, 0]
    e2 = corners[:, 2] - corners[:, 0]
    p = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, p)
    usable = np.abs(det) > 0  # zero: the ray runs parallel to the triangle
    inverse = np.divide(1.0, det, out=np.zeros_like(det), where=usable)
    s = origin - corners[:, 0]
    u = np.einsum("ij,ij->i", s, p) * inverse
    q = np.cross(s, e1)
    v = np.einsum("ij,ij->i", direction, q) * inverse
    t = np.einsum("ij,ij->i", e2, q) * inverse
    # t > 0 with a relative epsilon: a surface crossing the ray's own origin
    # (self-intersection) is not a wall.
    hit = usable & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > threshold * 1e-9) & (t <= threshold)
    np.minimum.at(distance, ray_ids[hit], t[hit])
