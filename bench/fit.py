"""Benchmark: the build-volume fit search (domain/fit.py) and the hull summary.

For each synthetic part (no customer data) and the Prusa MK4 box 250x210x220:

- `find_fit` as the quote runs it: best of --runs wall-clock times, and its answer;
- floor: the old check, sorted axis-aligned extents against sorted box sides;
- peer: a brute-force search (20,000 random rotations, then Nelder-Mead from the
  best 40, 3,000 evaluations each), as an accuracy reference: its smallest
  overshoot in mm (<= 0 means it found a fit).

Then `summarise_hull` on fine icospheres, next to scipy's ConvexHull alone (floor).

    .venv/bin/python bench/fit.py [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import trimesh
from scipy.optimize import minimize
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation

from domain.fit import _overshoot_many, _rotvec_matrix, find_fit
from domain.hull_summary import summarise_hull

BOX = np.array([250.0, 210.0, 220.0])


def best_time(function, runs: int) -> tuple[float, object]:
    result, best = None, float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def brute_force(points: np.ndarray) -> float:
    rotations = Rotation.random(20_000, rng=np.random.default_rng(3)).as_matrix()
    scores = _overshoot_many(rotations, points, BOX)
    best = float(scores.min())
    for index in np.argsort(scores)[:40]:
        start = rotations[index]

        def overshoot(vector, start=start):
            return _overshoot_many((_rotvec_matrix(vector) @ start)[None], points, BOX)[0]

        result = minimize(
            overshoot,
            np.zeros(3),
            method="Nelder-Mead",
            options={
                "maxfev": 3000,
                "xatol": 1e-10,
                "fatol": 1e-12,
                "initial_simplex": np.vstack([np.zeros(3), 0.05 * np.eye(3)]),
            },
        )
        best = min(best, float(result.fun))
    return best


def parts() -> list[tuple[str, np.ndarray]]:
    tilt = Rotation.from_euler("xyz", [17, -33, 71], degrees=True).as_matrix()
    return [
        ("box 240x200x210 tilted", trimesh.creation.box((240, 200, 210)).vertices @ tilt.T),
        ("bar 300x10x10", trimesh.creation.box((300, 10, 10)).vertices),
        ("bar 384x5x5", trimesh.creation.box((384, 5, 5)).vertices),
        ("bar 386x5x5", trimesh.creation.box((386, 5, 5)).vertices),
        ("sphere r=104 (642 v)", trimesh.creation.icosphere(3, radius=104).vertices),
        ("sphere r=106 (642 v)", trimesh.creation.icosphere(3, radius=106).vertices),
        ("bar 3000x10x10", trimesh.creation.box((3000, 10, 10)).vertices),
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    print(f"fit search, box {BOX.tolist()} mm, best of {runs}")
    print(f"{'part':26} {'find_fit':>10} {'answer':>8} {'floor':>9} {'floor says':>10} "
          f"{'peer':>8} {'peer overshoot':>15}")  # fmt: skip
    for name, points in parts():
        seconds, fit = best_time(lambda points=points: find_fit(points, BOX), runs)
        floor, straight = best_time(
            lambda points=points: bool((np.sort(np.ptp(points, axis=0)) <= np.sort(BOX)).all()),
            runs,
        )
        start = time.perf_counter()
        overshoot = brute_force(points)
        peer = time.perf_counter() - start
        print(
            f"{name:26} {seconds * 1000:8.1f}ms {('fits' if fit else 'no'):>8} "
            f"{floor * 1e6:7.1f}us {('fits' if straight else 'no'):>10} "
            f"{peer:7.2f}s {overshoot:+14.3f}mm"
        )
    print("\nhull summary (at most 512 points)")
    for level in (4, 5, 6):
        vertices = trimesh.creation.icosphere(level, radius=50).vertices
        seconds, summary = best_time(lambda v=vertices: summarise_hull(v), runs)
        floor, _ = best_time(lambda v=vertices: ConvexHull(v), runs)
        print(
            f"sphere r=50, {len(vertices):6} vertices: {seconds * 1000:7.1f} ms "
            f"(ConvexHull alone {floor * 1000:6.1f} ms), {len(summary.points)} points, "
            f"margin {summary.margin_mm:.3f} mm"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
