"""What an analysis returns: mirrors the API's `ModelMetadata` (API.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Issue:
    code: str  # stable, e.g. "OPEN_EDGES"; clients switch on it
    severity: Severity
    message: str


@dataclass(frozen=True)
class Dimensions:
    """Axis-aligned bounding box size in millimetres."""

    x: float
    y: float
    z: float


@dataclass(frozen=True)
class Printability:
    printable: bool
    issues: tuple[Issue, ...]
    # Checks still running (e.g. "THIN_WALLS"): their issues are not in `issues` yet,
    # and `printable` may still turn false when they end.
    pending_checks: tuple[str, ...] = ()

    @classmethod
    def from_issues(
        cls, issues: tuple[Issue, ...], pending_checks: tuple[str, ...] = ()
    ) -> Printability:
        printable = not any(i.severity == "error" for i in issues)
        return cls(printable=printable, issues=issues, pending_checks=pending_checks)


@dataclass(frozen=True)
class MeshReport:
    file_name: str
    file_size: int
    format: str
    dimensions: Dimensions
    volume: float  # mm³; see the VOLUME_UNRELIABLE issue before trusting it
    surface_area: float  # mm²
    triangle_count: int
    body_count: int
    is_watertight: bool
    printability: Printability
    # Open-edge corners closer than this (mm) were taken for one point.
    weld_tolerance_mm: float = 0.0
    # What a quote needs (domain/part_facts.py): the convex-hull summary and the wall
    # profile, as plain dicts. Customer data: the parent seals them before storing.
    hull: dict[str, Any] | None = None
    walls: dict[str, Any] | None = None

    @property
    def pending_checks(self) -> tuple[str, ...]:
        return self.printability.pending_checks

    def checks_abandoned(self, why: str) -> MeshReport:
        """This first report made final when its pending checks could not finish: they
        are named as not done (info), so no verdict is claimed that was not made."""
        unchecked = Issue("THICKNESS_NOT_CHECKED", "info", f"Wall thickness was not checked: {why}")
        issues = (*self.printability.issues, unchecked)
        return replace(self, printability=Printability.from_issues(issues), walls=None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (snake_case keys), e.g. for storage."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MeshReport:
        printability = values["printability"]
        return cls(
            file_name=str(values["file_name"]),
            file_size=int(values["file_size"]),
            format=str(values["format"]),
            dimensions=Dimensions(**values["dimensions"]),
            volume=float(values["volume"]),
            surface_area=float(values["surface_area"]),
            triangle_count=int(values["triangle_count"]),
            body_count=int(values["body_count"]),
            is_watertight=bool(values["is_watertight"]),
            printability=Printability(
                printable=bool(printability["printable"]),
                issues=tuple(Issue(**issue) for issue in printability["issues"]),
                pending_checks=tuple(str(c) for c in printability.get("pending_checks", ())),
            ),
            weld_tolerance_mm=float(values.get("weld_tolerance_mm", 0.0)),
            hull=_mapping(values.get("hull")),
            walls=_mapping(values.get("walls")),
        )


# Receives a report whose `pending_checks` are still running (`core.analyse`).
FirstReport = Callable[[MeshReport], None]


def _mapping(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value
