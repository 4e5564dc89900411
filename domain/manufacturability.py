"""Can this part be made in this material? The per-material verdict of a quote.

The analysis judges a model once, against the platform's default rules; a
quote judges it against one material: its minimum wall and its machine's
build volume. Material-independent defects found by the analysis (open
edges, non-manifold edges, an empty mesh, ...) are kept as they are; the
analysis' own verdicts on walls and size (made against the defaults) are
replaced by this material's.

Inputs are what the analysis stores (see docs/pricing.md, "What the analysis
must store"): the issues, a `HullSummary` for the fit and a `WallProfile`
for the walls. Pure functions: no I/O, deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .analysis.report import Issue, Severity
from .fit import Fit, find_fit
from .hull_summary import HullSummary
from .materials import MAX_MIN_WALL_MM, Material

# The analysis' own verdicts against platform defaults, replaced per material.
MATERIAL_DEPENDENT = frozenset({"THIN_WALLS", "EXCEEDS_BUILD_VOLUME", "THICKNESS_NOT_CHECKED"})
# Share of the surface thinner than the minimum that makes walls an error
# (below it, sharp edges and small details, a warning): the analysis' rule.
THIN_WALL_ERROR_SHARE = 0.01
# Walls are measured up to this thickness, so any material's minimum can be
# judged later; the same bound caps minWallMm.
WALL_PROBE_MM = float(MAX_MIN_WALL_MM)


@dataclass(frozen=True)
class WallProfile:
    """Ray-cast wall samples, kept so any minimum up to `probe_mm` can be judged.

    `distances` are the thicknesses (mm) found at or below `probe_mm`, sorted;
    `weighted[i]` says whether that ray was drawn in proportion to area (those
    estimate the thin share of the surface). Rays that met nothing within
    `probe_mm` are only counted.
    """

    probe_mm: float
    samples: int  # rays tested
    weighted_samples: int  # of them, drawn in proportion to area
    distances: np.ndarray  # (k,) float64, sorted, each <= probe_mm
    weighted: np.ndarray  # (k,) bool

    def thin(self, minimum_mm: float) -> tuple[int, float, float]:
        """(thin rays, thin share of the surface, thinnest wall) below `minimum_mm`."""
        count = int(np.searchsorted(self.distances, minimum_mm, side="right"))
        share = float(self.weighted[:count].sum()) / max(self.weighted_samples, 1)
        thinnest = float(self.distances[0]) if count else float("inf")
        return count, share, thinnest

    @classmethod
    def from_rays(
        cls, distance: np.ndarray, weighted: np.ndarray, probe_mm: float = WALL_PROBE_MM
    ) -> WallProfile:
        """From the analysis' rays: per ray the wall met within `probe_mm` (inf if
        none) and whether it was drawn by area (thickness._first_hits, _Rays.weighted)."""
        distance = np.asarray(distance, dtype=np.float64)
        weighted = np.asarray(weighted, dtype=bool)[: len(distance)]
        hit = distance <= probe_mm
        order = np.argsort(distance[hit], kind="stable")
        return cls(
            probe_mm=float(probe_mm),
            samples=len(distance),
            weighted_samples=int(weighted.sum()),
            distances=distance[hit][order],
            weighted=weighted[hit][order],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe_mm": self.probe_mm,
            "samples": self.samples,
            "weighted_samples": self.weighted_samples,
            "distances": self.distances.tolist(),
            "weighted": self.weighted.tolist(),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WallProfile:
        distances = np.asarray(values["distances"], dtype=np.float64)
        weighted = np.asarray(values["weighted"], dtype=bool)
        order = np.argsort(distances, kind="stable")
        return cls(
            probe_mm=float(values["probe_mm"]),
            samples=int(values["samples"]),
            weighted_samples=int(values["weighted_samples"]),
            distances=distances[order],
            weighted=weighted[order],
        )


@dataclass(frozen=True)
class PartFacts:
    """What the checks read from a model's stored analysis."""

    issues: tuple[Issue, ...]  # the analysis' printability issues
    hull: HullSummary
    walls: WallProfile | None  # None: not measured (open surface, or an older analysis)


@dataclass(frozen=True)
class Verdict:
    printable: bool
    issues: tuple[Issue, ...]  # errors first; what Quote.issues shows
    fit: Fit | None  # an orientation that fits the build volume, if any

    @property
    def reason(self) -> str:
        """One sentence for a NOT_PRINTABLE error: the first error's message."""
        errors = [issue.message for issue in self.issues if issue.severity == "error"]
        return errors[0] if errors else ""


_RANK = {"error": 0, "warning": 1, "info": 2}


def check(material: Material, part: PartFacts) -> Verdict:
    """Judge `part` in `material`: walls, build volume, and the analysis' other defects."""
    kept = [issue for issue in part.issues if issue.code not in MATERIAL_DEPENDENT]
    fit = find_fit(part.hull.points, material.build_volume_mm, part.hull.margin_mm)
    issues = [
        *kept,
        *_walls(material, part.walls, part.issues),
        *_build_volume(material, part.hull, fit),
    ]
    issues.sort(key=lambda issue: _RANK[issue.severity])
    printable = not any(issue.severity == "error" for issue in issues)
    return Verdict(printable=printable, issues=tuple(issues), fit=fit)


def _walls(material: Material, walls: WallProfile | None, issues: tuple[Issue, ...]) -> list[Issue]:
    minimum = float(material.min_wall_mm)
    if walls is None:
        if any(issue.code == "THICKNESS_NOT_CHECKED" for issue in issues):
            # Open surface: OPEN_EDGES already makes it unprintable.
            return [
                Issue(
                    "THICKNESS_NOT_CHECKED",
                    "info",
                    "Wall thickness was not checked because the surface is not closed.",
                )
            ]
        return [_unmeasured(minimum)]
    if minimum > walls.probe_mm:
        return [_unmeasured(minimum)]
    count, share, thinnest = walls.thin(minimum)
    if not count:
        return []
    severity: Severity = "error" if share >= THIN_WALL_ERROR_SHARE else "warning"
    where = f"about {share:.0%}" if share >= 0.01 else "a small part (under 1%)"
    return [
        Issue(
            "THIN_WALLS",
            severity,
            f"Walls as thin as {thinnest:.2f} mm on {where} of the surface; "
            f"{material.name} needs at least {minimum:g} mm.",
        )
    ]


def _unmeasured(minimum: float) -> Issue:
    # Fail safe: a wall check that did not run must not pass.
    return Issue(
        "THICKNESS_NOT_CHECKED",
        "error",
        f"Walls were not measured up to {minimum:g} mm for this material; "
        "the model must be analysed again.",
    )


def _build_volume(material: Material, hull: HullSummary, fit: Fit | None) -> list[Issue]:
    machine = "x".join(f"{float(v):g}" for v in material.build_volume)
    if fit is None:
        size = "x".join(f"{v:.1f}" for v in np.ptp(hull.points, axis=0))
        return [
            Issue(
                "EXCEEDS_BUILD_VOLUME",
                "error",
                f"At {size} mm the model does not fit the {machine} mm build volume of "
                f"{material.name} in any orientation.",
            )
        ]
    if fit.axis_aligned:
        return []
    return [
        Issue(
            "ROTATED_TO_FIT",
            "info",
            f"The model fits the {machine} mm build volume only when tilted "
            "(e.g. along a diagonal); the provider will orient it.",
        )
    ]
