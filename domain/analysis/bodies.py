"""Bodies: groups of triangles connected through shared edges."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .components import component_roots
from .edges import EdgeFacts


@dataclass(frozen=True)
class Bodies:
    count: int
    # Per triangle, the id of its body (the smallest triangle id in it);
    # collapsed triangles belong to none and keep their own id.
    label: np.ndarray


def find_bodies(face_count: int, edges: EdgeFacts, collapsed: np.ndarray) -> Bodies:
    label = component_roots(face_count, edges.pair_a, edges.pair_b)
    # A body's label is one of its own triangles: count each body once.
    own = label == np.arange(face_count, dtype=label.dtype)
    return Bodies(count=int((own & ~collapsed).sum()), label=label)
