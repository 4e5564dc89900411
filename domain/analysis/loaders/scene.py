"""OBJ, PLY, OFF, GLB and glTF, read with trimesh.

OBJ, PLY and OFF carry no units: values are millimetres. glTF is defined in
metres, so GLB/glTF values are scaled by 1000.

trimesh is given a file object without a name, so it has no resolver and
cannot open other files (OBJ materials, glTF buffers referenced by path);
`skip_materials` keeps it from decoding textures. For input it cannot make
sense of, trimesh often returns an empty scene rather than failing: that is
caught here as "no triangles".
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import AnalysisFailed
from .limits import check_triangle_count
from .transforms import placed_corners

METRES = {"glb": 1000.0, "gltf": 1000.0}


def load_scene(data: bytes, fmt: str, max_triangles: int) -> np.ndarray:
    import trimesh

    options = {"process": False}
    if fmt in ("obj", "glb", "gltf"):
        options["skip_materials"] = True
    scene = trimesh.load_scene(io.BytesIO(bytes(data)), file_type=fmt, **options)
    parts = []
    total = 0
    for node in scene.graph.nodes_geometry:
        matrix, name = scene.graph[node]
        mesh = scene.geometry.get(name)
        faces = getattr(mesh, "faces", None)
        if faces is None or not len(faces):
            continue  # point clouds, paths, empty meshes
        total += len(faces)
        check_triangle_count(total, max_triangles)
        vertices = np.asarray(mesh.vertices, dtype=np.float64)
        triangles = np.asarray(faces, dtype=np.int64)
        if triangles.ndim != 2 or triangles.shape[1] != 3:
            raise AnalysisFailed("The file contains faces that are not triangles.")
        if triangles.min() < 0 or triangles.max() >= len(vertices):
            raise AnalysisFailed("The file refers to vertices that do not exist.")
        parts.append(placed_corners(vertices, triangles, np.asarray(matrix, dtype=np.float64)))
    if not parts:
        return np.empty((0, 3, 3))
    corners = np.concatenate(parts)
    scale = METRES.get(fmt)
    if scale is not None:
        corners *= scale
    return corners
