"""Which way each triangle should face, and the volume that follows.

Volume is the sum of signed tetrahedra, so it is only meaningful once every
triangle winds the same way as its neighbours and each body faces outwards.
Slicers repair both silently, so the platform reports the repaired volume
(as PrusaSlicer and admesh do) and says what was repaired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bodies import Bodies
from .components import component_roots
from .edges import EdgeFacts

# Above this many bodies, per-body inside-out detection is skipped (it loops
# over bodies); the whole-mesh sign is still checked.
MAX_BODIES_CHECKED = 1000


@dataclass(frozen=True)
class Orientation:
    flipped: np.ndarray | None  # per triangle: reverse it to face outwards (None: none)
    rewound_faces: int  # triangles wound against their neighbours
    orientable: bool  # False for Möbius-like surfaces that cannot be made consistent
    inverted_bodies: int  # bodies that were entirely inside out
    volume: float  # mm³, with the repairs applied


def orient(
    face_volume: np.ndarray,
    edges: EdgeFacts,
    bodies: Bodies,
    valid: np.ndarray,
    corner_points,
) -> Orientation:
    """`corner_points(face_ids)` returns those triangles' (k, 3, 3) corners.

    Inside-out detection needs closed surfaces, so it only runs when the
    mesh is watertight.
    """
    flipped, orientable = None, True
    if edges.inconsistent_edges and not edges.nonmanifold_edges:
        flipped, orientable = _consistent_winding(len(face_volume), edges)
    rewound = int(flipped.sum()) if flipped is not None else 0
    signed = face_volume if flipped is None else np.where(flipped, -face_volume, face_volume)
    inverted = 0
    if edges.watertight and orientable:
        outward = _inside_out(signed, bodies, valid, corner_points)
        if outward is not None:
            inverted = len(np.unique(bodies.label[outward & valid]))
            flipped = outward if flipped is None else flipped ^ outward
            signed = np.where(outward, -signed, signed)
    volume = float(signed[valid].sum())
    return Orientation(flipped, rewound, orientable, inverted, volume)


def _consistent_winding(face_count: int, edges: EdgeFacts) -> tuple[np.ndarray, bool]:
    """Triangles to reverse so that every manifold edge is wound consistently.

    Each triangle appears twice in a doubled graph, as-is and reversed; a
    consistent pair links as-is to as-is, an inconsistent pair as-is to
    reversed. Each body then splits into two mirror components ("sheets"),
    unless it is non-orientable and both copies of a triangle meet. Keeping
    the sheet that already holds most triangles reverses the fewest.
    """
    keep = edges.pair_manifold
    a = edges.pair_a[keep].astype(np.int64)
    b = edges.pair_b[keep].astype(np.int64)
    same = edges.pair_consistent[keep]
    other = np.where(same, b, b + face_count)
    mirror = np.where(same, b + face_count, b)
    roots = component_roots(
        2 * face_count, np.concatenate([a, a + face_count]), np.concatenate([other, mirror])
    )
    as_is, reversed_ = roots[:face_count], roots[face_count:]
    orientable = not bool((as_is == reversed_).any())
    members = np.bincount(as_is, minlength=2 * face_count)
    flip = (members[reversed_] > members[as_is]) | (
        (members[reversed_] == members[as_is]) & (reversed_ < as_is)
    )
    flip &= as_is != reversed_
    return flip, orientable


def _inside_out(
    signed: np.ndarray, bodies: Bodies, valid: np.ndarray, corner_points
) -> np.ndarray | None:
    """Triangles of bodies facing inwards, or None when all face outwards.

    A body with negative volume is either inside out or a cavity inside
    another body (a hollow part is modelled as an outer and an inner shell).
    It is taken for a cavity when its bounding box lies within the box of a
    body of positive volume.
    """
    if bodies.count == 1:
        return valid.copy() if signed[valid].sum() < 0 else None
    labels = bodies.label[valid]
    body_volume = np.bincount(labels, weights=signed[valid], minlength=len(signed))
    negative = np.flatnonzero(body_volume < 0)
    if not len(negative):
        return None
    if body_volume.sum() < 0 and len(negative) == bodies.count:
        return valid.copy()  # everything is inside out
    if bodies.count > MAX_BODIES_CHECKED:
        return None
    boxes = _body_boxes(bodies.label, valid, corner_points)
    positive = [boxes[int(i)] for i in np.flatnonzero(body_volume > 0)]
    inverted = [i for i in negative if not any(_inside(boxes[int(i)], box) for box in positive)]
    if not inverted:
        return None
    return np.isin(bodies.label, inverted) & valid


def _body_boxes(label: np.ndarray, valid: np.ndarray, corner_points) -> dict[int, np.ndarray]:
    faces = np.flatnonzero(valid)
    faces = faces[np.argsort(label[faces], kind="stable")]
    cuts = np.flatnonzero(np.diff(label[faces])) + 1
    boxes = {}
    for group in np.split(faces, cuts):
        points = corner_points(group).reshape(-1, 3)
        boxes[int(label[group[0]])] = np.stack([points.min(axis=0), points.max(axis=0)])
    return boxes


def _inside(inner: np.ndarray, outer: np.ndarray) -> bool:
    return bool((inner[0] >= outer[0]).all() and (inner[1] <= outer[1]).all())
