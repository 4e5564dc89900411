"""Printability: turn measured facts into issues with stable codes.

Severity decides `printable`: any "error" makes a model unprintable.
Defects a slicer repairs on its own without changing the shape (winding,
inside-out bodies, degenerate triangles) are warnings; defects that leave
the shape undefined or unprintable (holes, non-manifold edges, walls too
thin, too big) are errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cracks import Joined
from .edges import EdgeFacts
from .orientation import Orientation
from .report import Issue
from .thickness import Thickness

_RANK = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Overlap:
    bodies: int  # bodies overlapping another
    shells_volume: float  # mm³, the shells summed (what the union replaces)


@dataclass(frozen=True)
class Facts:
    triangles: int
    degenerate: int
    size: np.ndarray  # bounding box (x, y, z), mm
    area: float  # mm²
    edges: EdgeFacts
    bodies: int
    orientation: Orientation
    thickness: Thickness | None  # None when not measured (open surface)
    weld_tolerance: float = 0.0  # mm, within which open-edge corners are joined
    joined: Joined | None = None  # cracks closed by that tolerance, if any
    volume: float = 0.0  # mm³ of the printed solid (the union where bodies overlap)
    overlap: Overlap | None = None


def printability_issues(
    facts: Facts,
    min_wall_mm: float,
    build_volume_mm: tuple[float, float, float],
    error_share: float,
    walls_pending: bool = False,
) -> tuple[Issue, ...]:
    """`walls_pending`: the wall check has not run yet; it adds its issue later."""
    walls = [] if walls_pending else _walls(facts.thickness, min_wall_mm, error_share)
    issues = [
        *_surface(facts),
        *_orientation(facts),
        *walls,
        *_build_volume(facts.size, build_volume_mm),
    ]
    return tuple(sorted(issues, key=lambda issue: _RANK[issue.severity]))


def _surface(facts: Facts) -> list[Issue]:
    edges, issues = facts.edges, []
    if facts.degenerate == facts.triangles:
        issues.append(
            Issue("EMPTY_MESH", "error", "The model has no surface: every triangle is degenerate.")
        )
    elif facts.degenerate:
        issues.append(
            Issue(
                "DEGENERATE_FACES",
                "warning",
                f"{facts.degenerate} {_plural(facts.degenerate, 'triangle')} without area "
                "(collinear or repeated corners), ignored.",
            )
        )
    if facts.joined is not None:
        joined = facts.joined
        issues.append(
            Issue(
                "CORNERS_JOINED",
                "info",
                f"{joined.corners} {_plural(joined.corners, 'corner')} at most "
                f"{joined.widest_gap:.1e} mm apart (rounding in the exporting program) were "
                f"joined; tolerance {facts.weld_tolerance:.1e} mm.",
            )
        )
    if edges.open_edges:
        issues.append(
            Issue(
                "OPEN_EDGES",
                "error",
                f"The surface is not closed: {edges.open_edges} open "
                f"{_plural(edges.open_edges, 'edge')} around {edges.holes} "
                f"{_plural(edges.holes, 'hole')}.",
            )
        )
    if edges.nonmanifold_edges:
        issues.append(
            Issue(
                "NON_MANIFOLD_EDGES",
                "error",
                f"{edges.nonmanifold_edges} {_plural(edges.nonmanifold_edges, 'edge')} "
                "shared by more than two triangles.",
            )
        )
    if facts.bodies > 1:
        issues.append(
            Issue(
                "MULTIPLE_BODIES",
                "warning",
                f"The model consists of {facts.bodies} separate bodies.",
            )
        )
    if facts.overlap is not None:
        issues.append(
            Issue(
                "OVERLAPPING_BODIES",
                "warning",
                f"{facts.overlap.bodies} bodies overlap; the volume is that of their union "
                f"({facts.volume:.6g} mm³), as printed, not the sum of the shells "
                f"({facts.overlap.shells_volume:.6g} mm³).",
            )
        )
    return issues


def _orientation(facts: Facts) -> list[Issue]:
    edges, orientation, issues = facts.edges, facts.orientation, []
    if not orientation.orientable:
        issues.append(
            Issue(
                "INCONSISTENT_WINDING",
                "error",
                "The surface cannot be oriented consistently (it is one-sided, like a Möbius "
                "strip).",
            )
        )
    elif edges.inconsistent_edges:
        if orientation.rewound_faces:
            count = orientation.rewound_faces
            where = f": {count} {_plural(count, 'triangle')} turned the wrong way"
        else:
            count = edges.inconsistent_edges
            where = f" along {count} {_plural(count, 'edge')}"
        issues.append(
            Issue(
                "INCONSISTENT_WINDING",
                "warning",
                f"The winding is inconsistent{where}; the volume assumes it repaired, "
                "as slicers do.",
            )
        )
    if orientation.inverted_bodies:
        inverted = orientation.inverted_bodies
        if inverted >= facts.bodies:
            subject = "The model is"
        else:
            subject = f"{inverted} of {facts.bodies} bodies {'is' if inverted == 1 else 'are'}"
        issues.append(
            Issue(
                "INVERTED_NORMALS",
                "warning",
                f"{subject} inside out (normals point inwards); "
                "the volume is given as if repaired.",
            )
        )
    if not edges.watertight or not orientation.orientable:
        why = "not closed" if not edges.watertight else "not orientable"
        issues.append(
            Issue(
                "VOLUME_UNRELIABLE",
                "warning",
                f"The volume is not reliable because the surface is {why}.",
            )
        )
    return issues


def _walls(thickness: Thickness | None, min_wall_mm: float, error_share: float) -> list[Issue]:
    if thickness is None:
        return [
            Issue(
                "THICKNESS_NOT_CHECKED",
                "info",
                "Wall thickness was not checked because the surface is not closed.",
            )
        ]
    if not thickness.thin_samples:
        return []
    share = thickness.thin_fraction
    severity = "error" if share >= error_share else "warning"
    where = f"about {share:.0%}" if share >= 0.01 else "a small part (under 1%)"
    return [
        Issue(
            "THIN_WALLS",
            severity,
            f"Walls as thin as {thickness.minimum:.2f} mm (minimum {min_wall_mm:g} mm) "
            f"on {where} of the surface.",
        )
    ]


def _build_volume(size: np.ndarray, build_volume_mm: tuple[float, float, float]) -> list[Issue]:
    # Any axis-aligned orientation will do: compare sorted extents.
    if (np.sort(size) <= np.sort(np.asarray(build_volume_mm, dtype=float))).all():
        return []
    model = "x".join(f"{v:.1f}" for v in size)
    machine = "x".join(f"{v:g}" for v in build_volume_mm)
    return [
        Issue(
            "EXCEEDS_BUILD_VOLUME",
            "error",
            f"At {model} mm the model does not fit the {machine} mm build volume "
            "in any axis-aligned orientation.",
        )
    ]


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
