"""Merge the duplicate corners of a triangle soup into shared vertices.

Files store each triangle's corners separately (STL always, others after
splitting on UVs or normals); topology needs one id per distinct point.
Identical coordinates are identical vertices: no tolerance, so the result
is exact and welding never changes the geometry.

Method: hash each corner's coordinate bits, sort the hashes packed with the
corner's position (one SIMD sort instead of a lexsort on three floats), then
check every corner against its group's first corner. Hash collisions are
found by that check and regrouped exactly, so the result never depends on
hash quality; only the speed does.
"""

from __future__ import annotations

import numpy as np

from .sorting import group_starts, index_bits, sort_packed

CHUNK = 1 << 14
VERIFY_CHUNK = 1 << 16
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_SEED = np.uint64(0x9E3779B97F4A7C15)
_32 = np.uint64(32)
_33 = np.uint64(33)


def weld(
    corners: np.ndarray, key_bits: int | None = None, scratch: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (vertices float64 (V, 3), faces (n, 3) int32, or int64 if huge).

    `key_bits` truncates the hash (tests use it to force collisions);
    `scratch`, an int64 array of 3n items, is used as work memory if given.
    """
    count = len(corners) * 3
    shift = index_bits(count)
    bits = 63 - shift if key_bits is None else min(key_bits, 63 - shift)
    keys, order = sort_packed(_packed_hashes(corners, shift, bits, scratch), shift)
    starts = group_starts(keys)
    del keys
    # The sorted keys are spent: their memory (the scratch) takes the two
    # running counts below, one after the other (a 5 M-triangle STL: 126 MB
    # less at the analysis' peak).
    spare = _spare(scratch, count, order.dtype)
    # Number the vertices in order of first use: the faces' vertex ids then
    # grow along with the faces, so every later lookup by vertex id walks
    # memory almost in order instead of at random (measured 2-3x faster).
    first_corner = order[starts]  # within a group, corners sort by position
    is_first = np.zeros(count, dtype=bool)
    is_first[first_corner] = True
    rank = np.cumsum(is_first, dtype=order.dtype, out=spare)
    rank -= 1
    group_vertex = rank[first_corner]
    del rank, first_corner
    group = np.cumsum(starts, dtype=order.dtype, out=_spare(scratch, count, order.dtype))
    group -= 1
    corner_vertex = np.empty(count, dtype=order.dtype)
    # In chunks: `group_vertex[group]` whole would be one more full-size array.
    for start in range(0, count, VERIFY_CHUNK):
        part = slice(start, start + VERIFY_CHUNK)
        corner_vertex[order[part]] = group_vertex[group[part]]
    del group, order, starts
    vertices = _points(corners, np.flatnonzero(is_first))
    vertices = _regroup_collisions(corners, vertices, corner_vertex)
    return vertices.astype(np.float64), corner_vertex.reshape(-1, 3)


def _spare(scratch: np.ndarray | None, count: int, dtype: np.dtype) -> np.ndarray | None:
    """`count` items of `dtype` in the scratch's memory, or None (numpy allocates)."""
    if scratch is None:
        return None
    return scratch.view(np.uint8)[: count * np.dtype(dtype).itemsize].view(dtype)


def _packed_hashes(
    corners: np.ndarray, shift: int, bits: int, scratch: np.ndarray | None
) -> np.ndarray:
    """`hash << shift | corner position` for every corner, in one int64 array."""
    packed = (
        np.empty((len(corners), 3), dtype=np.int64)
        if scratch is None
        else scratch[: len(corners) * 3].reshape(-1, 3)
    )
    size = min(len(corners), CHUNK)
    native = np.empty((3, 3, size), dtype=corners.dtype)  # (corner, axis, m)
    work = _HashScratch(size, corners.dtype.itemsize)
    drop = np.uint64(64 - bits)
    for start in range(0, len(corners), CHUNK):
        chunk = corners[start : start + CHUNK]
        m = len(chunk)
        soa = native[..., :m]
        np.copyto(soa, chunk.transpose(1, 2, 0))
        soa += 0  # turns -0.0 into 0.0: they compare equal, so they must weld
        position = work.position[:m]
        np.copyto(position, np.arange(start * 3, (start + m) * 3, 3))
        for corner in range(3):
            hashed = work.hash(soa[corner])
            hashed >>= drop
            key = hashed.view(np.int64)
            key <<= shift
            key |= position
            key += corner
            packed[start : start + m, corner] = key
    return packed.reshape(-1)


class _HashScratch:
    """Reused buffers for hashing one chunk of corner coordinates."""

    def __init__(self, size: int, itemsize: int) -> None:
        self.words = np.empty((3, size), dtype=np.uint64)
        self.h = np.empty(size, dtype=np.uint64)
        self.t = np.empty(size, dtype=np.uint64)
        self.position = np.empty(size, dtype=np.int64)
        self.narrow = itemsize == 4

    def hash(self, xyz: np.ndarray) -> np.ndarray:
        """64-bit hash of m points given as (3 axes, m); returns a reused buffer."""
        m = xyz.shape[1]
        words, h, t = self.words[:, :m], self.h[:m], self.t[:m]
        np.copyto(words, xyz.view(np.uint32 if self.narrow else np.uint64))
        if self.narrow:
            # x and y fit in one 64-bit word, z in another.
            np.left_shift(words[1], _32, out=words[1])
            words[0] |= words[1]
            np.bitwise_xor(words[2], _SEED, out=h)
            _mix(h, t)
            h ^= words[0]
        else:
            np.bitwise_xor(words[2], _SEED, out=h)
            _mix(h, t)
            h ^= words[1]
            _mix(h, t)
            h ^= words[0]
        _mix(h, t)
        return h


def _mix(h: np.ndarray, t: np.ndarray) -> None:
    """MurmurHash3's 64-bit finaliser (wrapping uint64 arithmetic), in place."""
    for multiplier in (_M1, _M2):
        np.right_shift(h, _33, out=t)
        h ^= t
        h *= multiplier
    np.right_shift(h, _33, out=t)
    h ^= t


def _regroup_collisions(
    corners: np.ndarray, vertices: np.ndarray, corner_vertex: np.ndarray
) -> np.ndarray:
    """Give corners that merely share a hash with their group their own vertices.

    `vertices` has the soup's dtype. Each corner is compared with its vertex
    axis by axis (1-D gathers of one coordinate are several times faster
    than gathering 3-coordinate rows).
    """
    columns = [np.ascontiguousarray(vertices[:, axis]) for axis in range(3)]
    by_face = corner_vertex.reshape(-1, 3)
    size = min(len(corners), VERIFY_CHUNK)
    ids = np.empty((size, 3), dtype=np.intp)
    gathered = np.empty((size, 3), dtype=vertices.dtype)
    unequal = np.empty((size, 3), dtype=bool)
    differs = np.empty((size, 3), dtype=bool)
    wrong: list[np.ndarray] = []
    for start in range(0, len(corners), VERIFY_CHUNK):
        chunk = corners[start : start + VERIFY_CHUNK]
        m = len(chunk)
        np.copyto(ids[:m], by_face[start : start + m])
        differs[:m] = False
        for axis, column in enumerate(columns):
            # mode="clip" (ids are valid): with `out`, the default mode
            # buffers the output, which triples the cost.
            np.take(column, ids[:m], out=gathered[:m], mode="clip")
            np.not_equal(gathered[:m], chunk[:, :, axis], out=unequal[:m])
            differs[:m] |= unequal[:m]
        if differs[:m].any():
            wrong.append(np.flatnonzero(differs[:m].ravel()) + start * 3)
    if not wrong:
        return vertices
    ids = np.concatenate(wrong)
    points = _points(corners, ids) + 0
    distinct, inverse = np.unique(points, axis=0, return_inverse=True)
    corner_vertex[ids] = len(vertices) + inverse.ravel()
    return np.concatenate([vertices, distinct])


def _points(corners: np.ndarray, corner_ids: np.ndarray) -> np.ndarray:
    """Coordinates (k, 3) of the given corners (3 * triangle + slot).

    Gathers each corner as one opaque 3-coordinate record straight from the
    (possibly strided) soup; `np.take` would first copy the whole soup.
    """
    triangle, slot = np.divmod(corner_ids, 3)
    if corners.strides[2] != corners.itemsize:
        return np.ascontiguousarray(corners[triangle, slot])
    records = corners.view(np.dtype((np.void, 3 * corners.itemsize)))[..., 0]
    return records[triangle, slot].view(corners.dtype).reshape(-1, 3)
