"""Knobs of one analysis run, with the platform's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class AnalysisOptions:
    min_wall_thickness_mm: float = 0.8
    build_volume_mm: tuple[float, float, float] = (250.0, 210.0, 220.0)
    # Refuse bigger meshes before spending memory on them.
    max_triangles: int = 10_000_000
    # Rays cast to find thin walls; the cost is linear in this number.
    wall_thickness_samples: int = 2000
    # Share of the sampled surface that must be thinner than the minimum
    # before thin walls make a model unprintable; below it (sharp edges,
    # small details) they are only a warning.
    thin_wall_error_fraction: float = 0.01
    # Walls are measured up to this thickness (mm), so that a quote can judge any
    # material's minimum wall later (domain/manufacturability.WALL_PROBE_MM).
    wall_probe_mm: float = 5.0
    sampling_seed: int = 0
    # 3MF is a ZIP archive: bound what it may unpack to.
    max_unpacked_bytes: int = 1024 * MIB
    max_archive_entries: int = 1000
    # Chordal deviation allowed when STEP surfaces are triangulated, as a
    # fraction of the part's largest size: freeform faces (the volume comes
    # from this tessellation: within 3e-5 measured), and parts whose faces are
    # all analytic (the volume comes exactly from the B-rep; the mesh only
    # serves the topology and thickness checks).
    step_size_fraction: float = 2e-5
    step_analytic_fraction: float = 2e-4

    @classmethod
    def from_settings(cls, settings: Any) -> AnalysisOptions:
        """Take the platform rules from `domain.settings.Settings`."""
        return cls(
            min_wall_thickness_mm=float(settings.min_wall_thickness_mm),
            build_volume_mm=tuple(float(v) for v in settings.build_volume_mm),
            wall_thickness_samples=int(settings.wall_thickness_samples),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AnalysisOptions:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        if "build_volume_mm" in kwargs:
            kwargs["build_volume_mm"] = tuple(float(v) for v in kwargs["build_volume_mm"])
        return cls(**kwargs)
