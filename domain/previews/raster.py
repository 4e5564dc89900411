"""A z-buffer triangle rasteriser in numpy: which triangle is nearest at each sample.

Runs in the calling thread with no native graphics stack (no GL, no display, no
driver threads), in batches of at most rules.FRAGMENTS_PER_BATCH candidate samples
so that its memory is bounded whatever the mesh. Chosen over VTK/OSMesa, pyrender
and matplotlib by measurement (bench/previews.py, docs/previews.md).

Each triangle's edge functions and depth are planes in screen space, so a sample's
barycentric weights and depth are three multiply-adds on per-triangle coefficients.
"""

from __future__ import annotations

import numpy as np

from . import rules


def nearest_faces(screen: np.ndarray, faces: np.ndarray, width: int, height: int) -> np.ndarray:
    """(height*width,) index of the visible triangle per sample, -1 where there is none.

    screen: (n, 3) float64, x and y in sample units (sample (i, j) is centred at
    (i + 0.5, j + 0.5)), z larger when nearer the viewer.
    """
    planes = _planes(screen, faces)
    x0, y0, spans_x, counts = _boxes(screen, faces, width, height)
    depth = np.full(width * height, -np.inf)
    nearest = np.full(width * height, -1, dtype=np.int64)
    ends = np.cumsum(counts)
    first = 0
    while first < len(faces):
        # Triangles whose candidate samples fit one batch (at least one triangle).
        base = ends[first - 1] if first else 0
        last = max(int(np.searchsorted(ends, base + rules.FRAGMENTS_PER_BATCH, "right")), first + 1)
        chosen = np.arange(first, last)
        chosen = chosen[counts[chosen] > 0]
        if len(chosen):
            _draw(chosen, planes, x0, y0, spans_x, counts, width, depth, nearest)
        first = last
    return nearest


def candidate_samples(screen: np.ndarray, faces: np.ndarray, width: int, height: int) -> int:
    """How many samples nearest_faces would test: its time is proportional to this."""
    return int(_boxes(screen, faces, width, height)[3].sum())


def _planes(screen: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(9, m): w0, w1 (barycentric weights of vertices 0 and 1) and z, each as the
    coefficients (a, b, c) of a*x + b*y + c; one contiguous row per coefficient, so
    the per-sample gathers below are 1-D takes. w2 = 1 - w0 - w1."""
    a, b, c = (screen[faces[:, k]] for k in range(3))
    doubled = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(doubled != 0, 1.0 / doubled, 0.0)  # edge-on: never inside

    def edge(p: np.ndarray, q: np.ndarray) -> list[np.ndarray]:
        # Weight of the vertex opposite the edge p->q: 1 at that vertex, 0 on the edge.
        return [
            (p[:, 1] - q[:, 1]) * inverse,
            (q[:, 0] - p[:, 0]) * inverse,
            (p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]) * inverse,
        ]

    w0, w1 = edge(b, c), edge(c, a)
    w2 = [-w0[0] - w1[0], -w0[1] - w1[1], 1.0 - w0[2] - w1[2]]
    z = [w0[k] * a[:, 2] + w1[k] * b[:, 2] + w2[k] * c[:, 2] for k in range(3)]
    return np.stack(w0 + w1 + z)


def _boxes(screen: np.ndarray, faces: np.ndarray, width: int, height: int):
    """Per triangle: the first sample column and row it may cover, columns, and samples."""
    xy = screen[:, :2][faces]  # (m, 3, 2)
    low = np.ceil(xy.min(axis=1) - 0.5)
    high = np.floor(xy.max(axis=1) - 0.5)
    low = np.maximum(low, 0).astype(np.int64)
    high = np.minimum(high, [width - 1, height - 1]).astype(np.int64)
    spans = np.maximum(high - low + 1, 0)
    return low[:, 0], low[:, 1], spans[:, 0], spans[:, 0] * spans[:, 1]


def _draw(chosen, planes, x0, y0, spans_x, counts, width, depth, nearest) -> None:
    per = counts[chosen]
    face = np.repeat(chosen, per)
    starts = np.cumsum(per) - per
    k = np.arange(len(face)) - np.repeat(starts, per)
    span = spans_x[face]
    column = x0[face] + k % span
    row = y0[face] + k // span
    del k, span
    x, y = column + 0.5, row + 0.5
    w0 = _at(planes, 0, face, x, y)
    w1 = _at(planes, 3, face, x, y)
    inside = (w0 >= 0) & (w1 >= 0) & (w0 + w1 <= 1)
    del w0, w1
    face, x, y = face[inside], x[inside], y[inside]
    sample = row[inside] * width + column[inside]
    z = _at(planes, 6, face, x, y)
    np.maximum.at(depth, sample, z)
    # Ties between batches keep the later triangle; within one, the last written.
    won = z >= depth[sample]
    nearest[sample[won]] = face[won]


def _at(planes: np.ndarray, first: int, face: np.ndarray, x: np.ndarray, y: np.ndarray):
    """The plane planes[first:first+3] evaluated at (x, y) for each sample's triangle."""
    value = planes[first].take(face) * x
    value += planes[first + 1].take(face) * y
    value += planes[first + 2].take(face)
    return value
