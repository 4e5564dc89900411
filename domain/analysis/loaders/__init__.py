"""Turn a file's bytes into a triangle soup: an (n, 3, 3) array in millimetres.

One module per family of formats. Every loader raises AnalysisFailed with a
readable reason for files it cannot use; third-party exceptions never leak
(their text may contain paths or internals).
"""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisFailed
from ..options import AnalysisOptions

FORMAT_NAMES = {
    "stl": "STL",
    "obj": "OBJ",
    "ply": "PLY",
    "off": "OFF",
    "3mf": "3MF",
    "glb": "GLB",
    "gltf": "glTF",
    "step": "STEP",
    "iges": "IGES",
}


def load_corners(data: bytes, fmt: str, options: AnalysisOptions) -> np.ndarray:
    if fmt not in FORMAT_NAMES:
        raise AnalysisFailed(f"Files of type '{fmt[:16]}' are not supported.")
    if fmt == "iges":
        raise AnalysisFailed(
            "IGES files are not supported (they rarely describe closed solids): "
            "please export STEP, 3MF or STL."
        )
    try:
        return _load(data, fmt, options)
    except (AnalysisFailed, MemoryError):
        raise
    except Exception as exc:  # third-party parsers fail in many ways
        raise AnalysisFailed(
            f"The file could not be read as {FORMAT_NAMES[fmt]}: it is damaged or not "
            "in this format."
        ) from exc


def _load(data: bytes, fmt: str, options: AnalysisOptions) -> np.ndarray:
    # Imports are local: the STL path must not pay for trimesh or OpenCASCADE.
    if fmt == "stl":
        from .stl import load_stl

        return load_stl(data, options.max_triangles)
    if fmt == "3mf":
        from .threemf import load_3mf

        return load_3mf(data, options)
    if fmt == "step":
        from .step import load_step

        return load_step(data, options)
    from .scene import load_scene

    return load_scene(data, fmt, options.max_triangles)
