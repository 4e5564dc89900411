"""OBJ, PLY, OFF, GLB and glTF, read with trimesh.

Values come back in the file's own unit (the format registry says which).

trimesh is given a file object without a name, so it has no resolver and
cannot open other files (OBJ materials, glTF buffers referenced by path);
`skip_materials` keeps it from decoding textures. For input it cannot make
sense of, trimesh often returns an empty scene rather than failing: that is
caught here as "no triangles".
"""

from __future__ import annotations

import io
import json

import numpy as np

from ..errors import AnalysisFailed
from ..options import AnalysisOptions
from .limits import check_triangle_count
from .transforms import placed_corners

EXTERNAL_BUFFERS = (
    "This glTF file keeps its geometry in separate files, which an upload cannot carry: "
    "please upload a .glb (binary glTF holds everything in one file)."
)


def load_scene(data: bytes, fmt: str, options: AnalysisOptions) -> np.ndarray:
    if fmt == "gltf":
        _check_embedded(data)
    return scene_corners(data, fmt, options.max_triangles)


def _check_embedded(data: bytes) -> None:
    """A .gltf whose buffers or images are other files (not data: URIs) is refused
    with a reason the customer can act on, instead of "damaged"."""
    try:
        document = json.loads(bytes(data))
    except (ValueError, UnicodeDecodeError):
        return  # the parser below reports it as damaged
    buffers = document.get("buffers") if isinstance(document, dict) else None
    for buffer in buffers if isinstance(buffers, list) else []:
        uri = buffer.get("uri") if isinstance(buffer, dict) else None
        if isinstance(uri, str) and not uri.startswith("data:"):
            raise AnalysisFailed(EXTERNAL_BUFFERS)


def scene_corners(data: bytes, fmt: str, max_triangles: int) -> np.ndarray:
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
    return np.concatenate(parts)
