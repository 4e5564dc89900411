"""Edge topology of a welded mesh: holes, non-manifold edges, winding.

Every triangle contributes three half-edges. Sorting them by their
undirected key (smaller vertex id, larger vertex id) puts the half-edges of
one geometric edge next to each other; the size of each run says whether the
edge is open (1), manifold (2) or non-manifold (3+), and a manifold edge is
consistently wound when its two half-edges run in opposite directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .components import component_roots
from .sorting import index_bits, order_dtype, sort_packed

CHUNK = 1 << 16
# Bits available to pack (two vertex ids, triangle, direction) into one key;
# beyond that (meshes of millions of vertices) a slower argsort is used.
PACKED_BITS = 63


@dataclass(frozen=True)
class EdgeFacts:
    open_edges: int  # edges used by one triangle only
    holes: int  # connected loops of open edges
    nonmanifold_edges: int  # edges shared by more than two triangles
    inconsistent_edges: int  # manifold edges whose two triangles disagree on winding
    # Pairs of triangles sharing an edge, with whether that edge is manifold
    # and, if so, whether the pair is consistently wound.
    pair_a: np.ndarray
    pair_b: np.ndarray
    pair_manifold: np.ndarray
    pair_consistent: np.ndarray
    # Vertices at the ends of open edges (sorted, unique): where cracks are closed.
    open_vertices: np.ndarray

    @property
    def watertight(self) -> bool:
        return self.open_edges == 0 and self.nonmanifold_edges == 0


def collapsed_faces(faces: np.ndarray) -> np.ndarray:
    """Triangles using one vertex twice: they have no edges worth counting."""
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    return (a == b) | (b == c) | (c == a)


def edge_facts(
    faces: np.ndarray, vertex_count: int, collapsed: np.ndarray, scratch: np.ndarray | None = None
) -> EdgeFacts:
    """`scratch`, an int64 array of 3n items, is used as work memory if given."""
    keys, sides = _sorted_half_edges(faces, vertex_count, collapsed, scratch)
    # Runs of equal keys are the edges; everything below works on boolean
    # masks over the sorted half-edges (1 byte each, no index arrays).
    # joined[i]: half-edge i+1 belongs to the same edge as half-edge i.
    joined = np.zeros(len(keys) + 1, dtype=bool)
    np.equal(keys[1:], keys[:-1], out=joined[1:-1])
    first = ~joined[:-1]  # first half-edge of its edge
    follows = joined[1:]  # the next half-edge is on the same edge
    single = first & ~follows
    holes, open_vertices = _holes(keys[single], vertex_count)
    del keys
    crowded = first[:-1] & follows[:-1] & follows[1:]  # a third half-edge follows
    pairs = follows[:-1]
    # A pair is manifold when its edge has exactly those two half-edges.
    manifold = (first[:-1] & ~follows[1:])[pairs]
    del joined, first, follows
    one, other = sides[:-1][pairs], sides[1:][pairs]
    del sides, pairs
    # Consistent winding: the two triangles run along the edge in opposite
    # directions, i.e. their direction bits differ. In place: at 5 M
    # triangles each temporary here is 30-60 MB of the analysis' peak.
    differ = np.bitwise_xor(one, other)
    differ &= 1
    consistent = differ.astype(bool)
    del differ
    one >>= 1
    other >>= 1
    return EdgeFacts(
        open_edges=int(single.sum()),
        holes=holes,
        nonmanifold_edges=int(crowded.sum()),
        inconsistent_edges=int((manifold & ~consistent).sum()),
        pair_a=one,
        pair_b=other,
        pair_manifold=manifold,
        pair_consistent=consistent,
        open_vertices=open_vertices,
    )


def _sorted_half_edges(
    faces: np.ndarray, vertex_count: int, collapsed: np.ndarray, scratch: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted undirected keys of all half-edges, and each one's `face << 1 | direction`.

    The direction bit is set when the half-edge runs from the smaller vertex
    id to the larger.
    """
    vertex_bits = max(1, int(vertex_count).bit_length())
    # Collapsed triangles get the largest key, sort last and are cut off.
    sentinel = (1 << (2 * vertex_bits)) - 1
    kept = 3 * (len(faces) - int(collapsed.sum()))
    shift = index_bits(2 * len(faces))
    packable = 2 * vertex_bits + shift <= PACKED_BITS
    count = len(faces) * 3
    keys = np.empty(count, np.int64) if scratch is None else scratch[:count]
    keys = keys.reshape(-1, 3)
    side_type = order_dtype(2 * len(faces))
    sides = None if packable else np.empty((len(faces), 3), dtype=side_type)
    work = _KeyScratch(min(len(faces), CHUNK))
    for start in range(0, len(faces), CHUNK):
        chunk = faces[start : start + CHUNK]
        m = len(chunk)
        for slot in range(3):
            key, side = work.half_edges(
                chunk[:, slot], chunk[:, (slot + 1) % 3], start, vertex_bits
            )
            key[collapsed[start : start + m]] = sentinel
            if packable:
                key <<= shift
                key |= side
            else:
                sides[start : start + m, slot] = side
            keys[start : start + m, slot] = key
    keys = keys.reshape(-1)
    if packable:
        keys, side = sort_packed(keys, shift)
    else:
        # Too many vertices to pack a key with its half-edge: sort the order
        # (stable: ties in face order, as the packed sort leaves them), gather
        # the sides, then sort the keys themselves in place (equal to
        # keys[order], without a second full-size key array).
        order = np.argsort(keys, kind="stable")
        side = sides.reshape(-1)[order]
        del order, sides
        keys.sort()
    return keys[:kept], side[:kept]


class _KeyScratch:
    """Reused buffers for the half-edges of one chunk of triangles."""

    def __init__(self, size: int) -> None:
        self.start = np.empty(size, dtype=np.int64)
        self.end = np.empty(size, dtype=np.int64)
        self.key = np.empty(size, dtype=np.int64)
        self.side = np.empty(size, dtype=np.int64)
        self.forward = np.empty(size, dtype=bool)

    def half_edges(
        self, start: np.ndarray, end: np.ndarray, first_face: int, vertex_bits: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(undirected key, face << 1 | direction) of the half-edges start -> end."""
        m = len(start)
        a, b, key, side, forward = (
            self.start[:m],
            self.end[:m],
            self.key[:m],
            self.side[:m],
            self.forward[:m],
        )
        np.copyto(a, start)
        np.copyto(b, end)
        np.less(a, b, out=forward)
        np.minimum(a, b, out=key)
        key <<= vertex_bits
        np.maximum(a, b, out=a)
        key |= a
        np.copyto(side, np.arange(first_face, first_face + m, dtype=np.int64))
        side <<= 1
        side |= forward
        return key, side


def _holes(open_keys: np.ndarray, vertex_count: int) -> tuple[int, np.ndarray]:
    """Number of connected loops formed by the open edges, and their vertices."""
    if not len(open_keys):
        return 0, np.empty(0, dtype=np.int64)
    vertex_bits = max(1, int(vertex_count).bit_length())
    ends = np.concatenate([open_keys >> vertex_bits, open_keys & ((1 << vertex_bits) - 1)])
    used, local = np.unique(ends, return_inverse=True)
    local = local.ravel()
    roots = component_roots(len(used), local[: len(open_keys)], local[len(open_keys) :])
    return int((roots == np.arange(len(used))).sum()), used
