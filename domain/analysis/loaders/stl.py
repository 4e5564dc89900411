"""STL, binary and ASCII. STL has no units: values are millimetres.

Binary STL is read without copying: the triangle corners are a float32
strided view into the upload's buffer (50-byte records, corners at offset 12).
"""

from __future__ import annotations

import re

import numpy as np

from ...formats import binary_stl_size_ok, looks_like_ascii_stl
from ..errors import AnalysisFailed
from ..options import AnalysisOptions
from .limits import check_triangle_count

# Parse ASCII in windows of about this size, cut after a whole facet.
WINDOW = 16 * 1024 * 1024
_NUMBER = rb"\s+(\S+)"
_FACET = re.compile(
    rb"facet\s+normal\s+\S+\s+\S+\s+\S+\s+outer\s+loop"
    + (rb"\s+vertex" + _NUMBER * 3) * 3
    + rb"\s+endloop\s+endfacet"
)


def load_stl(data: bytes, fmt: str, options: AnalysisOptions) -> np.ndarray:
    max_triangles = options.max_triangles
    head = bytes(data[:4096])
    if looks_like_ascii_stl(head) and not binary_stl_size_ok(head, len(data)):
        return _ascii(data, max_triangles)
    if binary_stl_size_ok(head, len(data)):
        return _binary(data, max_triangles)
    raise AnalysisFailed("The STL file is truncated or damaged.")


def _binary(data: bytes, max_triangles: int) -> np.ndarray:
    count = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
    check_triangle_count(count, max_triangles)
    if not count:
        return np.empty((0, 3, 3), dtype=np.float32)
    return np.ndarray(
        shape=(count, 3, 3), dtype="<f4", buffer=data, offset=84 + 12, strides=(50, 12, 4)
    )


def _ascii(data: bytes, max_triangles: int) -> np.ndarray:
    check_triangle_count(data.count(b"endfacet"), max_triangles)
    # A complete file ends with 'endsolid': without it, it was cut short.
    if b"endsolid" not in bytes(data[-1024:]).lower():
        raise AnalysisFailed("The ASCII STL file is truncated (it does not end with 'endsolid').")
    parts = []
    start = 0
    while start < len(data):
        end = _window_end(data, start)
        window = bytes(data[start:end]).lower()
        rows = _FACET.findall(window)
        if len(rows) != window.count(b"endfacet") or len(rows) != window.count(b"outer loop"):
            raise AnalysisFailed("The ASCII STL file is truncated or damaged.")
        if rows:
            parts.append(_numbers(rows))
        start = end
    if not parts:
        return np.empty((0, 3, 3))
    return np.concatenate(parts).reshape(-1, 3, 3)


def _window_end(data: bytes, start: int) -> int:
    if len(data) - start <= WINDOW:
        return len(data)
    cut = data.rfind(b"endfacet", start, start + WINDOW)
    if cut < 0:
        cut = data.rfind(b"ENDFACET", start, start + WINDOW)
    if cut < 0:
        raise AnalysisFailed("The ASCII STL file is damaged (a facet is too long).")
    return cut + len(b"endfacet")


def _numbers(rows: list[tuple[bytes, ...]]) -> np.ndarray:
    try:
        return np.array(rows, dtype="S").astype(np.float64)
    except ValueError as exc:
        raise AnalysisFailed("The ASCII STL file contains a malformed number.") from exc
