"""Close the hairline cracks CAD exports leave: corners meant to coincide
that differ in their last digits.

CAD kernels compute each face's tessellation on its own, and the shared
boundary of two faces is written twice with rounding noise (1e-16 mm on
featuretype.STL): exact welding then sees hundreds of open edges where
PrusaSlicer, which welds with a tolerance, sees a closed part.

Only vertices on open edges are joined, and only with each other, within a
tolerance tied to the model's size and to the precision its numbers were
stored with:

- float64 (text formats, 3MF, STEP): 1e-9 of the largest extent;
- float32 (binary STL, GLB): 4 units in the last place of the largest
  coordinate (2^-21 of it), the noise a float32 round trip can add.

A real gap (a missing facet, a scan's hole, loose triangles) is many orders
of magnitude wider than either and stays open.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Relative to the largest extent of the model, for numbers stored in float64.
EXTENT_FRACTION = 1e-9
# Units in the last place of float32 a stored corner may be off by.
FLOAT32_ULPS = 4


@dataclass(frozen=True)
class Joined:
    faces: np.ndarray  # (n, 3) with joined vertices renumbered
    corners: int  # open-edge vertices that were moved onto another
    widest_gap: float  # largest distance between two joined vertices, mm


def weld_tolerance(lower: np.ndarray, upper: np.ndarray, single_precision: bool) -> float:
    """Distance (mm) below which two open-edge corners are the same point."""
    extent = float(np.max(upper - lower))
    tolerance = EXTENT_FRACTION * extent
    if single_precision:
        largest = float(max(np.abs(lower).max(), np.abs(upper).max()))
        tolerance = max(tolerance, FLOAT32_ULPS * float(np.finfo(np.float32).eps) * largest)
    return tolerance


def close_cracks(
    vertices: np.ndarray, faces: np.ndarray, open_vertices: np.ndarray, tolerance: float
) -> Joined:
    """Join open-edge vertices closer than `tolerance` (transitively)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if len(open_vertices) < 2 or tolerance <= 0:
        return Joined(faces, 0, 0.0)
    points = vertices[open_vertices]
    pairs = cKDTree(points).query_pairs(tolerance, output_type="ndarray")
    if not len(pairs):
        return Joined(faces, 0, 0.0)
    count = len(open_vertices)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    _, group = connected_components(graph, directed=False)
    # Each group takes the id of its smallest member.
    representative = np.full(group.max() + 1, count)
    np.minimum.at(representative, group, np.arange(count))
    target = open_vertices[representative[group]]
    moved = target != open_vertices
    remap = np.arange(len(vertices), dtype=faces.dtype)
    remap[open_vertices] = target
    gap = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1).max()
    return Joined(remap[faces], int(moved.sum()), float(gap))
