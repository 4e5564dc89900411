"""What casting the thin-wall rays to 5 mm (the probe a quote needs) costs the analysis.

For each mesh of ../shared/meshes (and a generated 1.3 M-triangle sphere), the whole
in-process analysis (`domain.analysis.core.analyse`) runs with the rays cast only to
the default minimum wall (probe 0, the floor: what the analysis did before quotes)
and to 5 mm, alternating, best of 3 each, in the same run. Prints both and the ratio.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import trimesh

from domain.analysis.core import analyse
from domain.analysis.options import AnalysisOptions
from domain.formats import sniff_format

MESHES = Path(__file__).resolve().parents[2] / "shared" / "meshes"
PICK = ("20mm-xyz-cube.stl", "bunny.ply", "counterXP.3MF", "featuretype.STL", "idler_riser.STL")


def _best(data: bytes, name: str, fmt: str, options: AnalysisOptions) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        analyse(data, name, fmt, options)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    cases = [(name, (MESHES / name).read_bytes()) for name in PICK if (MESHES / name).exists()]
    sphere = trimesh.creation.icosphere(subdivisions=8, radius=20.0)
    cases.append(("sphere 1.3M triangles", sphere.export(file_type="stl")))
    floor = replace(AnalysisOptions(), wall_probe_mm=0.0)
    probed = AnalysisOptions()
    print(f"{'mesh':28} {'probe 0 (floor) s':>18} {'probe 5 mm s':>14} {'ratio':>7}")
    for name, data in cases:
        fmt = "stl" if name.startswith("sphere") else sniff_format(data[:4096], name)
        base = _best(data, name, fmt, floor)
        cost = _best(data, name, fmt, probed)
        print(f"{name:28} {base:18.3f} {cost:14.3f} {cost / base:7.2f}")


if __name__ == "__main__":
    main()
