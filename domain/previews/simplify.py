"""Bring a mesh down to the web viewer's triangle budget.

fast-simplification (quadric edge collapse, Fast-Quadric-Mesh-Simplification) keeps
the shape well but costs ~4 us a triangle; above a few hundred thousand triangles a
vertex-clustering pass (cells sized so about twice the budget remain) does the
coarse work first in numpy, in a fraction of that time. Measured in
bench/previews.py, decided in docs/previews.md.
"""

from __future__ import annotations

import numpy as np

from . import rules
from .errors import PreviewError
from .geometry import doubled_areas


def simplify(
    vertices: np.ndarray, faces: np.ndarray, budget: int, area: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """At most `budget` triangles of the same shape (unit frame in, unit frame out).

    `area`: the surface's total area when the caller knows it already.
    """
    if len(faces) <= budget:
        return vertices, faces
    if len(faces) > rules.CLUSTER_ABOVE_TRIANGLES:
        target = int(budget * rules.CLUSTER_TARGET_FACTOR)
        vertices, faces = cluster(vertices, faces, target, area)
    if len(faces) > budget:
        vertices, faces = _quadric(vertices, faces, budget)
    # Quadric collapse can stall above the budget (e.g. on a cloud of unconnected
    # triangles): coarser grids then, and a clean refusal if even those do not help.
    for halving in range(1, rules.MAX_EXTRA_CLUSTERINGS + 1):
        if len(faces) <= budget:
            break
        vertices, faces = cluster(vertices, faces, budget >> halving)
    if len(faces) > budget:
        raise PreviewError("The model could not be simplified for a preview.")
    return vertices, faces


def _quadric(vertices: np.ndarray, faces: np.ndarray, budget: int):
    import fast_simplification

    out_vertices, out_faces = fast_simplification.simplify(
        vertices, faces.astype(np.int32), target_count=budget
    )
    return np.asarray(out_vertices, dtype=np.float64), np.asarray(out_faces, dtype=np.int64)


def cluster(vertices: np.ndarray, faces: np.ndarray, target: int, area: float | None = None):
    """Merge the vertices in each cell of a grid sized so about `target` triangles remain.

    A closed surface of area A crossing cells of side h leaves about 2 A / h^2
    triangles (two per occupied cell), so h = sqrt(2 A / target).
    """
    if area is None:
        area = float(doubled_areas(vertices, faces).sum()) / 2
    side = float(np.sqrt(2.0 * area / target))
    if not side > 0:
        return vertices, faces
    # Unit frame: coordinates within [-0.5, 0.5], at most 1/side + 1 cells an axis.
    cells = np.floor((vertices + 0.5) / side).astype(np.int64)
    count = int(cells.max()) + 1
    key = (cells[:, 0] * count + cells[:, 1]) * count + cells[:, 2]
    del cells
    _, cell_of = np.unique(key, return_inverse=True)
    del key
    members = np.bincount(cell_of).astype(np.float64)
    merged = (
        np.stack([np.bincount(cell_of, weights=vertices[:, axis]) for axis in range(3)], axis=1)
        / members[:, None]
    )
    remapped = cell_of[faces]
    keep = (
        (remapped[:, 0] != remapped[:, 1])
        & (remapped[:, 1] != remapped[:, 2])
        & (remapped[:, 0] != remapped[:, 2])
    )
    return merged, _without_fins(remapped[keep], len(merged))


def _without_fins(faces: np.ndarray, vertex_count: int) -> np.ndarray:
    """Drop every triangle that clustering made twice.

    Two triangles squeezed onto the same three cells are a fin of no volume (a
    thin wall, or a fold of a curved surface); keeping them would leave edges with
    four triangles, which neither the quadric simplifier nor a viewer handles well.
    """
    ordered = np.sort(faces, axis=1)
    if vertex_count < 1 << 21:  # three indices fit one int64 key: a fast 1-D unique
        ordered = (ordered[:, 0] * vertex_count + ordered[:, 1]) * vertex_count + ordered[:, 2]
        _, first, count = np.unique(ordered, return_index=True, return_counts=True)
    else:
        _, first, count = np.unique(ordered, axis=0, return_index=True, return_counts=True)
    return faces[np.sort(first[count == 1])]
