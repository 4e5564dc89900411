"""Size, surface area and volume of a triangle soup, in float64.

The soup is an (n, 3, 3) array in millimetres, possibly a float32 strided
view straight into a binary STL buffer. It is read in chunks copied into a
reused float64 buffer laid out coordinate by coordinate, and every operation
writes into preallocated scratch arrays: precision does not depend on the
file's storage type, memory stays bounded whatever the triangle count, and
no time goes to page-faulting fresh temporaries (which, measured, cost three
times the arithmetic itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import AnalysisFailed

CHUNK = 1 << 14
# A triangle whose height is below this fraction of its longest edge has no
# usable area (collinear corners).
FLAT_RATIO = 1e-9


@dataclass(frozen=True)
class Geometry:
    lower: np.ndarray  # (3,) bounding box corners, mm
    upper: np.ndarray
    face_area: np.ndarray  # (n,) mm²
    # (n,) signed volume of the tetrahedron (reference, v0, v1, v2), mm³;
    # they sum to the enclosed volume whatever the reference point.
    face_volume: np.ndarray
    flat: np.ndarray  # (n,) bool: zero-area triangle
    # (n,) float32: distance from the first corner to the farthest one, so the
    # whole triangle lies within this distance of corner 0 (thin-wall search).
    reach: np.ndarray

    @property
    def size(self) -> np.ndarray:
        return self.upper - self.lower


def measure(corners: np.ndarray) -> Geometry:
    """Measure every triangle; refuse NaN or infinite coordinates."""
    count = len(corners)
    out = Geometry(
        lower=np.full(3, np.inf),
        upper=np.full(3, -np.inf),
        face_area=np.empty(count),
        face_volume=np.empty(count),
        flat=np.empty(count, dtype=bool),
        reach=np.empty(count, dtype=np.float32),
    )
    # Volumes are taken against a point on the mesh rather than the origin:
    # far-from-origin models would otherwise lose digits to cancellation.
    reference = np.asarray(corners[0, 0], dtype=np.float64) if count else np.zeros(3)
    scratch = _Scratch(min(count, CHUNK))
    for start in range(0, count, CHUNK):
        chunk = corners[start : start + CHUNK]
        work = scratch.sized(len(chunk))
        np.copyto(work.soa, chunk.transpose(1, 2, 0))  # (corner, axis, m) float64
        work.soa -= reference[None, :, None]
        _bounds(work.soa, out.lower, out.upper)
        _triangles(work, out, slice(start, start + len(chunk)))
    # NaN and infinities propagate into min/max: one check covers them all.
    if not (np.isfinite(out.lower).all() and np.isfinite(out.upper).all()):
        raise AnalysisFailed("The file contains invalid coordinates (NaN or infinity).")
    np.add(out.lower, reference, out=out.lower)
    np.add(out.upper, reference, out=out.upper)
    return out


@dataclass
class _Scratch:
    """Reused work arrays for one chunk of m triangles."""

    soa: np.ndarray  # (3 corners, 3 axes, m)
    edges: np.ndarray  # (2, 3, m): v1 - v0, v2 - v0
    cross: np.ndarray  # (3, m)
    squared: np.ndarray  # (2, m): |e1|², |e2|²
    tmp: np.ndarray  # (m,)

    def __init__(self, size: int) -> None:
        self.soa = np.empty((3, 3, size))
        self.edges = np.empty((2, 3, size))
        self.cross = np.empty((3, size))
        self.squared = np.empty((2, size))
        self.tmp = np.empty(size)

    def sized(self, size: int) -> _Scratch:
        if size == self.tmp.shape[0]:
            return self
        view = object.__new__(_Scratch)
        view.soa, view.edges = self.soa[..., :size], self.edges[..., :size]
        view.cross, view.squared, view.tmp = (
            self.cross[:, :size],
            self.squared[:, :size],
            self.tmp[:size],
        )
        return view


def _bounds(soa: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
    for axis in range(3):
        values = soa[:, axis]
        lower[axis] = min(lower[axis], values.min())
        upper[axis] = max(upper[axis], values.max())


def _triangles(work: _Scratch, out: Geometry, part: slice) -> None:
    edges, cross, tmp = work.edges, work.cross, work.tmp
    np.subtract(work.soa[1:], work.soa[0], out=edges)
    (ax, ay, az), (bx, by, bz) = edges
    for axis, (p, q, r, s) in enumerate(((ay, bz, az, by), (az, bx, ax, bz), (ax, by, ay, bx))):
        np.multiply(p, q, out=cross[axis])
        np.multiply(r, s, out=tmp)
        cross[axis] -= tmp
    # det(v0, v1, v2) == v0 . ((v1 - v0) x (v2 - v0)), all relative to the reference
    _dot(work.soa[0], cross, out.face_volume[part], tmp)
    out.face_volume[part] *= 1.0 / 6.0
    doubled = out.face_area[part]
    _dot(cross, cross, doubled, tmp)
    np.sqrt(doubled, out=doubled)
    np.multiply(edges, edges, out=edges)
    squared = work.squared
    np.add(edges[:, 0], edges[:, 1], out=squared)
    squared += edges[:, 2]
    np.maximum(squared[0], squared[1], out=tmp)
    np.sqrt(tmp, out=tmp)
    out.reach[part] = tmp
    # doubled area = base * height; |e1|² + |e2|² bounds the longest base²
    # within a factor 2, so this flags height <~ FLAT_RATIO * base.
    np.add(squared[0], squared[1], out=tmp)
    tmp *= FLAT_RATIO
    np.less_equal(doubled, tmp, out=out.flat[part])
    doubled *= 0.5


def _dot(a: np.ndarray, b: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> None:
    """Row-wise dot product of two (3, m) arrays into `out`."""
    np.multiply(a[0], b[0], out=out)
    for axis in (1, 2):
        np.multiply(a[axis], b[axis], out=tmp)
        out += tmp
