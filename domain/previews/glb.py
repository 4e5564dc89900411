"""A web-ready binary glTF of a unit-frame mesh: metres, centred, +Y up, with normals."""

from __future__ import annotations

import numpy as np

from . import rules
from .prepare import Frame

# glTF is +Y up; printed parts are +Z up: (x, y, z) -> (x, z, -y), a proper rotation.
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def glb_bytes(vertices: np.ndarray, faces: np.ndarray, frame: Frame) -> bytes:
    import trimesh

    metres = _centred(vertices) * (frame.size / rules.MM_PER_METRE)
    mesh = trimesh.Trimesh(metres @ Z_UP_TO_Y_UP.T, faces, process=False)
    # Split vertices along sharp edges so a box keeps flat faces in the viewer.
    shaded = trimesh.graph.smooth_shade(mesh, angle=np.radians(rules.CREASE_DEGREES))
    return trimesh.exchange.gltf.export_glb(shaded, include_normals=True)


def _centred(vertices: np.ndarray) -> np.ndarray:
    # Simplification moves the box a little: centre again on what is exported.
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    return vertices - (low + high) / 2
