"""The printed solid where bodies overlap: their union, with manifold3d.

A part exported as several overlapping shells (a boss modelled through a
plate, an assembly of touching parts) is printed as one solid: summing the
shells counts the overlap twice (admesh's conveyor/merge.stl: +89 %), and
rays cast inside one shell meet the other, which looks like a wall of zero
thickness. The slicer prints the union, so the union is what is measured.

Only bodies whose bounding boxes meet can overlap; when none do, nothing
here runs. Cavities (inner shells facing inwards, found by `orientation`)
are subtracted from the union of the outer shells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The union is taken for an overlap when it is smaller than the sum of the
# shells by more than this share (float rounding in the boolean stays below).
OVERLAP_SHARE = 1e-7
# Above this many bodies the pairwise box test is skipped (it is quadratic).
MAX_BODIES = 1000


@dataclass(frozen=True)
class Solid:
    volume: float  # mm³ of the union
    vertices: np.ndarray  # (V, 3) float64, the union's surface
    faces: np.ndarray  # (n, 3) int64, wound outwards
    overlapping: int  # bodies that overlap at least one other


@dataclass(frozen=True)
class _Body:
    faces: np.ndarray  # triangle ids
    lower: np.ndarray
    upper: np.ndarray
    volume: float  # signed, after orientation repairs


def printed_solid(
    vertices: np.ndarray,
    faces: np.ndarray,
    signed_volume: np.ndarray,
    label: np.ndarray,
    valid: np.ndarray,
) -> Solid | None:
    """The union of overlapping bodies, or None when no two bodies overlap.

    `faces` must already be wound outwards (cavities inwards); `signed_volume`
    is each triangle's volume contribution with those repairs applied.
    """
    bodies = _bodies(vertices, faces, signed_volume, label, valid)
    if not 1 < len(bodies) <= MAX_BODIES:
        return None
    solids = [b for b in bodies if b.volume > 0]
    meeting = _boxes_meeting(solids)
    if not meeting.any():
        return None
    result = _union(vertices, faces, bodies)
    if result is None:
        return None
    total = sum(b.volume for b in bodies)
    volume = float(result.volume())
    if total - volume <= OVERLAP_SHARE * max(abs(total), 1e-300):
        return None  # boxes met, solids did not
    mesh = result.to_mesh64()
    return Solid(
        volume=volume,
        vertices=np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3],
        faces=np.asarray(mesh.tri_verts, dtype=np.int64),
        overlapping=int(meeting.sum()),
    )


def _bodies(
    vertices: np.ndarray,
    faces: np.ndarray,
    signed_volume: np.ndarray,
    label: np.ndarray,
    valid: np.ndarray,
) -> list[_Body]:
    ids = np.flatnonzero(valid)
    ids = ids[np.argsort(label[ids], kind="stable")]
    cuts = np.flatnonzero(np.diff(label[ids])) + 1
    groups = np.split(ids, cuts)
    if len(groups) > MAX_BODIES:
        return []
    bodies = []
    for group in groups:
        points = vertices[faces[group]].reshape(-1, 3)
        bodies.append(
            _Body(group, points.min(axis=0), points.max(axis=0), float(signed_volume[group].sum()))
        )
    return bodies


def _boxes_meeting(bodies: list[_Body]) -> np.ndarray:
    """Per body: does its box overlap (with volume) another body's box?"""
    if len(bodies) < 2:
        return np.zeros(len(bodies), dtype=bool)
    lower = np.array([b.lower for b in bodies])
    upper = np.array([b.upper for b in bodies])
    apart = (lower[:, None, :] >= upper[None, :, :]) | (upper[:, None, :] <= lower[None, :, :])
    meets: np.ndarray = ~np.any(apart, axis=2)
    np.fill_diagonal(meets, False)
    return np.asarray(np.any(meets, axis=1))


def _union(vertices: np.ndarray, faces: np.ndarray, bodies: list[_Body]):
    """Union of the outer shells minus the cavities; None if manifold3d refuses a body."""
    from manifold3d import Manifold, Mesh64, OpType

    outer, cavities = [], []
    for body in bodies:
        triangles = faces[body.faces]
        if body.volume < 0:
            triangles = triangles[:, ::-1]  # a cavity, turned into the solid it removes
        used, local = np.unique(triangles, return_inverse=True)
        mesh = Mesh64(
            vert_properties=np.ascontiguousarray(vertices[used], dtype=np.float64),
            tri_verts=np.ascontiguousarray(local.reshape(-1, 3), dtype=np.uint64),
        )
        solid = Manifold(mesh)
        if solid.status().name != "NoError" or solid.is_empty():
            return None
        (outer if body.volume > 0 else cavities).append(solid)
    result = Manifold.batch_boolean(outer, OpType.Add)
    if cavities:
        result = Manifold.batch_boolean([result, *cavities], OpType.Subtract)
    return result
