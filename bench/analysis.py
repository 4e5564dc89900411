"""Benchmark: geometry analysis of binary STL icospheres against admesh.

Generates two synthetic meshes (not customer files, so writing them to a
temporary directory is fine), then for each prints the wall-clock seconds
and peak resident memory of

- the platform's analysis, run the production way (`run_isolated`: a fresh
  child process fed through a pipe, including interpreter start-up), and
- `admesh FILE` on the same file (Debian package `admesh`), when installed,

with their ratio. Each figure is the best of --runs runs after one warm-up.

    .venv/bin/python bench/analysis.py [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trimesh

from domain.analysis import AnalysisOptions, analyse
from domain.analysis.sandbox import run_isolated_with_stats

MIB = 1024 * 1024
MESHES = (("icosphere-4", 4), ("icosphere-8", 8))  # 5,120 and 1,310,720 triangles
TIMEOUT_S = 120.0
MEMORY_BYTES = 4096 * MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    admesh = shutil.which("admesh")
    if admesh is None:
        print("admesh is not installed (apt-get install admesh): comparison skipped.\n")
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as folder:
        for name, subdivisions in MESHES:
            path = Path(folder) / f"{name}.stl"
            trimesh.creation.icosphere(subdivisions=subdivisions, radius=50.0).export(path)
            _bench(path, admesh, runs)


def _bench(path: Path, admesh: str | None, runs: int) -> None:
    data = path.read_bytes()
    options = AnalysisOptions()
    report = analyse(data, path.name, "stl", options)
    in_process = min(_timed(lambda: analyse(data, path.name, "stl", options)) for _ in range(runs))
    ours = _best(runs, lambda: _ours(data, path.name, options))
    triangles = f"{report.triangle_count:,} triangles"
    print(f"{path.name}: {triangles}, {len(data) / MIB:.1f} MiB")
    print(f"  volume {report.volume:.6f} mm³, area {report.surface_area:.6f} mm²")
    print(f"  analysis in-process (no spawn):  {in_process:7.3f} s")
    _line("analysis (run_isolated)", ours, len(data))
    if admesh is not None:
        theirs = _best(runs, lambda: _admesh(admesh, path))
        _line("admesh", theirs, len(data))
        print(
            f"  ratio analysis/admesh: time {ours[0] / theirs[0]:.2f}x, "
            f"peak memory {ours[1] / theirs[1]:.2f}x"
        )
    print()


def _ours(data: bytes, name: str, options: AnalysisOptions) -> tuple[float, int]:
    _, stats = run_isolated_with_stats(data, name, "stl", options, TIMEOUT_S, MEMORY_BYTES)
    return stats.seconds, stats.peak_rss_bytes


def _admesh(admesh: str, path: Path) -> tuple[float, int]:
    """admesh's wall time and peak RSS.

    The peak is read by GNU time (`/usr/bin/time`) when present, because
    getrusage on a child forked from this (large) process reports at least
    this process's own peak. Otherwise psutil samples the child's RSS.
    """
    timer = shutil.which("time", path="/usr/bin:/bin")
    command = [admesh, str(path)]
    if timer:
        command = [timer, "-f", "%M", *command]
    started = time.monotonic()
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if timer else None
    )
    peak = 0 if timer else _sample_rss(child)
    _, errors = child.communicate()
    seconds = time.monotonic() - started
    if child.returncode:
        raise SystemExit(f"admesh failed with exit code {child.returncode}")
    if timer:
        peak = int(errors.decode().strip().splitlines()[-1]) * 1024
    return seconds, peak


def _sample_rss(child: subprocess.Popen) -> int:
    import psutil

    peak = 0
    process = psutil.Process(child.pid)
    while child.poll() is None:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.001)
    return peak


def _best(runs: int, measure) -> tuple[float, int]:
    measure()  # warm-up: page cache, memory first-touch in this VM
    results = [measure() for _ in range(runs)]
    return min(r[0] for r in results), min(r[1] for r in results)


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _line(label: str, result: tuple[float, int], file_size: int) -> None:
    seconds, peak = result
    print(
        f"  {label + ':':32s} {seconds:7.3f} s, peak {peak / MIB:6.1f} MiB "
        f"({peak / file_size:.2f}x the file)"
    )


if __name__ == "__main__":
    main()
