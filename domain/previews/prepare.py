"""Check a mesh and bring it into the preview's working frame.

The working frame is centred on the bounding box and scaled so the longest side
is 1: simplification and rendering then behave the same for a 2 mm part and for
one placed a kilometre from the origin (float64 cancellation happens once, here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import rules
from .errors import PreviewError
from .geometry import doubled_areas


@dataclass(frozen=True)
class Frame:
    """Where the working frame sits in millimetres: mm = unit * size + centre."""

    centre: np.ndarray  # (3,) float64, mm
    size: float  # the longest side of the bounding box, mm


@dataclass(frozen=True)
class UnitMesh:
    vertices: np.ndarray  # (n, 3) float64 within [-0.5, 0.5]
    faces: np.ndarray  # (m, 3) int64, no degenerate triangle
    frame: Frame
    area: float  # of all triangles, in the unit frame


def prepare(vertices: np.ndarray, faces: np.ndarray) -> UnitMesh:
    """Validate, drop degenerate triangles, centre and scale; PreviewError if nothing is left."""
    vertices, faces = _checked(vertices, faces)
    vertices, faces = _used_only(vertices, faces)
    frame = _frame(vertices)
    unit = vertices - frame.centre
    unit /= frame.size
    doubled = doubled_areas(unit, faces)
    keep = doubled > rules.MIN_RELATIVE_AREA
    if not keep.any():
        raise PreviewError("The model has no triangle with an area.")
    return UnitMesh(unit, faces[keep], frame, float(doubled[keep].sum()) / 2)


def _checked(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise PreviewError("The model is not a triangle mesh.")
    if len(faces) == 0 or len(vertices) == 0:
        raise PreviewError("The model has no triangles.")
    if len(faces) > rules.MAX_INPUT_TRIANGLES:
        raise PreviewError(
            f"The model has more than {rules.MAX_INPUT_TRIANGLES:,} triangles for a preview."
        )
    if not np.issubdtype(faces.dtype, np.integer):
        raise PreviewError("The model is not a triangle mesh.")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise PreviewError("The model refers to vertices it does not have.")
    vertices = vertices.astype(np.float64, copy=False)
    if not np.isfinite(vertices).all():
        raise PreviewError("The model has coordinates that are not numbers.")
    return vertices, faces.astype(np.int64, copy=False)


def _used_only(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no triangle uses: they must not move the centre or cost memory.

    Renumbered through a running count (O(n + m)), not a sort.
    """
    used = np.zeros(len(vertices), dtype=bool)
    used[faces] = True
    if used.all():
        return vertices, faces
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces]


def _frame(points: np.ndarray) -> Frame:
    low, high = points.min(axis=0), points.max(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        centre = low / 2 + high / 2  # halves first: no overflow near the float64 limit
        size = float(np.max(high - low))
    if not np.isfinite(size) or size / rules.MM_PER_METRE > rules.MAX_METRES:
        raise PreviewError("The model is too large to show.")
    # A model of one point, or one placed so far out that its size is lost in the
    # rounding of its coordinates, has nothing to show.
    if size <= 0 or size <= np.max(np.abs(centre)) * 1e-12:
        raise PreviewError("The model has no extent.")
    return Frame(centre, size)
