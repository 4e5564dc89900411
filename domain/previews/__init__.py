"""Web previews of a mesh: a simplified binary glTF and a shaded PNG thumbnail.

Pure functions from (vertices in mm, triangles) to bytes, all in memory: no file, no
thread, no process, no network, no display. Every input either yields both previews
or raises PreviewError with a reason fit for the model's owner.
"""

from __future__ import annotations

import numpy as np

from . import rules
from .errors import PreviewError
from .geometry import compact

# Aliased: the modules `prepare` and `simplify` stay reachable under their own names.
from .glb import glb_bytes as _glb_bytes
from .prepare import prepare as _prepare
from .result import Previews
from .simplify import simplify as _simplify
from .thumbnail import render_png as _render_png

__all__ = ["PreviewError", "Previews", "make_previews"]


def make_previews(vertices: np.ndarray, faces: np.ndarray) -> Previews:
    """Both previews of a mesh: vertices (n, 3) in mm, faces (m, 3) vertex indices.

    Raises PreviewError (with `.reason`) for a mesh that has nothing to show.
    """
    unit = _prepare(vertices, faces)
    small_vertices, small_faces = compact(
        *_simplify(unit.vertices, unit.faces, rules.MAX_GLB_TRIANGLES, unit.area)
    )
    png = _render_png(small_vertices, small_faces)  # first: it may refuse a model
    return Previews(
        glb=_glb_bytes(small_vertices, small_faces, unit.frame),
        png=png,
        triangles=len(small_faces),
    )
