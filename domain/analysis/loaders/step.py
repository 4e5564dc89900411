"""STEP: exact solids read by OpenCASCADE, triangulated for the mesh checks.

Two readings of the same bytes, both from memory (the plaintext never
touches a disk; the child is confined so it could not anyway):

1. gmsh's OpenCASCADE kernel reads the B-rep through a memfd and gives each
   solid's exact volume, each face's area and type, and the part's size.
   OpenCASCADE converts the file's unit (mm, inch, m...) to millimetres.
2. cascadio (OpenCASCADE's mesher) triangulates it into a GLB, in memory,
   with a chordal tolerance tied to the part's size, for topology, bodies
   and wall thickness.

When every face is analytic (plane, cylinder, cone, sphere, torus),
OpenCASCADE's mass properties are exact (1e-13 measured on generated
parts) and give the volume and area. Freeform faces (B-splines) are
integrated less reliably by OpenCASCADE's fixed-order quadrature (measured:
+4.4e-4 on featuretype.STEP against a converged tessellation), so there
the tessellation, at 2e-5 of the part's size, gives them (within 3e-5).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass

import numpy as np

from ..errors import AnalysisFailed
from ..options import AnalysisOptions
from .scene import scene_corners

METRES_MM = 1000.0  # cascadio writes glTF, which is in metres
ANGULAR_TOLERANCE = 0.5  # radians, cascadio's default
ANALYTIC = frozenset({"Plane", "Cylinder", "Cone", "Sphere", "Torus"})
NO_SOLID = "The STEP file could not be read or holds no solid geometry."


@dataclass(frozen=True)
class Brep:
    """What OpenCASCADE knows exactly about the solids, in mm."""

    solids: int
    volume: float  # mm³, summed over the solids
    area: float  # mm², summed over their faces
    analytic: bool  # every face is a plane, cylinder, cone, sphere or torus
    extent: float  # largest side of the bounding box


@dataclass(frozen=True)
class Exact:
    """Measures the analysis takes instead of the tessellation's."""

    volume: float
    area: float
    solids: int


def load_step(data: bytes, fmt: str, options: AnalysisOptions) -> tuple[np.ndarray, Exact | None]:
    brep = read_brep(bytes(data))
    if brep is None or brep.extent <= 0:
        raise AnalysisFailed(NO_SOLID)
    fraction = options.step_size_fraction if not brep.analytic else options.step_analytic_fraction
    corners = _triangulate(bytes(data), fraction * brep.extent, options.max_triangles)
    exact = Exact(brep.volume, brep.area, brep.solids) if brep.analytic and brep.solids else None
    return corners, exact


def _triangulate(data: bytes, tolerance_mm: float, max_triangles: int) -> np.ndarray:
    import cascadio

    glb = cascadio.to_glb_bytes(
        data,
        cascadio.STEP,
        tol_linear=tolerance_mm,
        tol_angular=ANGULAR_TOLERANCE,
        tol_relative=False,
        merge_primitives=True,
        use_parallel=True,
    )
    if not glb:
        raise AnalysisFailed(NO_SOLID)
    corners = scene_corners(glb, "glb", max_triangles)
    corners *= METRES_MM
    return corners


def read_brep(data: bytes, fmt: str = "step") -> Brep | None:
    """Exact properties of the file's solids via gmsh's OpenCASCADE kernel."""
    import gmsh

    memory = os.memfd_create("cad", os.MFD_CLOEXEC)
    try:
        os.write(memory, data)
        gmsh.initialize(["-noenv"], readConfigFiles=False, interruptible=False)
        # gmsh resets SIGPIPE to "terminate": a later write to a closed pipe
        # would kill the process instead of raising BrokenPipeError.
        with contextlib.suppress(ValueError):  # only the main thread may set it
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        try:
            gmsh.option.setNumber("General.Terminal", 0)
            gmsh.model.occ.importShapes(f"/proc/self/fd/{memory}", format=fmt)
            gmsh.model.occ.synchronize()
            return _properties(gmsh)
        except Exception:  # gmsh raises bare Exceptions for unreadable input
            return None
        finally:
            gmsh.finalize()
    finally:
        with contextlib.suppress(OSError):
            os.close(memory)


def _properties(gmsh) -> Brep:
    occ, model = gmsh.model.occ, gmsh.model
    solids = [tag for _, tag in model.getEntities(3)]
    faces = {tag for solid in solids for _, tag in model.getBoundary([(3, solid)], oriented=False)}
    kinds = {model.getType(2, tag) for tag in faces}
    lower, upper = np.array(model.getBoundingBox(-1, -1)).reshape(2, 3)
    return Brep(
        solids=len(solids),
        volume=float(sum(occ.getMass(3, tag) for tag in solids)),
        area=float(sum(occ.getMass(2, tag) for tag in faces)),
        analytic=bool(faces) and kinds <= ANALYTIC,
        extent=float((upper - lower).max()),
    )
