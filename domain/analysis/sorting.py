"""Sorting integer keys while keeping track of where each key came from.

`np.argsort` is several times slower than `np.sort` on 64-bit integers (the
latter is SIMD-accelerated), so when a key and its position fit together in
63 bits they are packed into one integer and sorted in place.
"""

from __future__ import annotations

import numpy as np


def index_bits(count: int) -> int:
    """Bits needed to store a position in an array of `count` items."""
    return max(1, (count - 1).bit_length())


def order_dtype(count: int) -> type[np.signedinteger]:
    return np.int32 if count < 2**31 else np.int64


def sort_packed(packed: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort `key << shift | position` values in place; return (keys, order).

    The keys are returned in the same buffer (shifted back), so the only new
    memory is the order array.
    """
    packed.sort()
    order = np.empty(len(packed), dtype=order_dtype(len(packed)))
    # The ufunc casts chunk by chunk: no full-size int64 temporary.
    np.bitwise_and(packed, (1 << shift) - 1, out=order, casting="unsafe")
    packed >>= shift
    return packed, order


def group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Boolean mask of the first element of each run of equal keys."""
    starts = np.empty(len(sorted_keys), dtype=bool)
    if len(sorted_keys):
        starts[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=starts[1:])
    return starts
