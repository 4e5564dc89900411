"""Placing a mesh's triangles in the scene: shared by the 3MF and glTF loaders."""

from __future__ import annotations

import numpy as np


def placed_corners(vertices: np.ndarray, triangles: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Corners (k, 3, 3) of `triangles` after the 4x4 column-vector `matrix`.

    A mirroring transform (negative determinant) turns the surface inside
    out, so the winding is reversed to keep the normals pointing outwards.
    """
    linear, offset = matrix[:3, :3], matrix[:3, 3]
    placed = vertices @ linear.T + offset
    corners = placed[triangles]
    if np.linalg.det(linear) < 0:
        corners = corners[:, ::-1]
    return corners
