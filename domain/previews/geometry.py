"""Per-triangle measures shared by the preview steps, in bounded batches."""

from __future__ import annotations

import numpy as np

# Triangles per batch: temporaries stay near 100 MB whatever the mesh.
_BATCH = 1 << 20


def doubled_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(m,) twice each triangle's area (the length of its edge cross product)."""
    # One contiguous array per coordinate: 1-D takes are several times faster than
    # gathering (k, 3) rows, and np.cross is slower still.
    x, y, z = (np.ascontiguousarray(vertices[:, axis]) for axis in range(3))
    out = np.empty(len(faces))
    for start in range(0, len(faces), _BATCH):
        block = faces[start : start + _BATCH]
        a, b, c = (np.ascontiguousarray(block[:, k]) for k in range(3))
        ux, uy, uz = x.take(b) - x.take(a), y.take(b) - y.take(a), z.take(b) - z.take(a)
        vx, vy, vz = x.take(c) - x.take(a), y.take(c) - y.take(a), z.take(c) - z.take(a)
        nx = uy * vz - uz * vy
        ny = uz * vx - ux * vz
        nz = ux * vy - uy * vx
        out[start : start + _BATCH] = np.sqrt(nx * nx + ny * ny + nz * nz)
    return out


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Only the vertices some triangle uses, renumbered (strays must not widen bounds)."""
    used, renumbered = np.unique(faces, return_inverse=True)
    return vertices[used], renumbered.reshape(faces.shape)
