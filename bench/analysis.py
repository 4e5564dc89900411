"""Benchmark: geometry analysis end to end, next to `admesh FILE` in the same run.

For each file, as a client sees it, over the API of a real server process
(`server.py serve`, SQLite, encrypted local store, the in-process job engine,
the pre-forked isolated analysis child):

- upload->DONE: from sending the multipart upload to the first poll that
  reads `DONE` (polling `model.analysisStatus` every 10 ms); by default the
  server analyses the upload while it streams in, `--no-stream` measures the
  job fetching and decrypting the stored file instead;
- answer->DONE: the same, from the upload's answer (the fixed cost of the job
  hand-off, waiting for the child or fetch and decryption, the result write);
- ->checked: from sending the upload until `printability.pendingChecks` is
  empty (DONE comes before the wall-thickness check, docs/analysis.md);
- child: `run_isolated` alone, in this process, the way the job calls it;
- own: `analyse` in this process (the analysis' own time, no process hand-off)
  until its first report (what DONE waits for), and "all" until the complete one;
- peak: the largest resident set of any process under the server while the
  file is analysed (sampled every 5 ms with psutil), against the file size;
- admesh: `admesh FILE` wall time (Debian package `admesh`) and the ratios.

Files: generated icospheres (1,310,720 and 5,242,880 triangles; synthetic, so
writing them to a temporary directory is fine), a 1 KB STL, a generated
mechanical part (a plate with 60 bosses and holes) as one shell and as 61
overlapping shells, and the real CAD STLs of ../shared/meshes when present.
Each figure is the median of --runs runs after one warm-up. Nothing here passes
or fails on time.

    .venv/bin/python bench/analysis.py [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domain.analysis.cpu_tuning import numpy_environment  # before numpy loads

# `own` is timed in this process: with the numpy settings the analysis child gets.
os.environ.update(numpy_environment())

import httpx
import numpy as np
import psutil
import trimesh

from bench.common import (
    HOST,
    child_env,
    free_port,
    print_machine,
    sign_up,
    subprocess_running,
    wait_healthy,
)
from domain.analysis import AnalysisOptions, analyse
from domain.analysis.sandbox import prestart, run_isolated_with_stats

MIB = 1024 * 1024
SHARED = Path(__file__).resolve().parents[2] / "shared" / "meshes"
CAD_FILES = ("featuretype.STL", "idler_riser.STL", "octagonal_pocket.stl", "20mm-xyz-cube.stl",
             "admesh-conveyor-merge.stl")
POLL_S = 0.010
MODEL = """query($id: ID!) { model(id: $id) { analysisStatus analysisError
  metadata { printability { pendingChecks } } } }"""
UPLOAD = (
    "mutation($f: Upload!) { uploadModel(file: $f) { id analysisStatus } }"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the 5M-triangle sphere")
    parser.add_argument("--only", default="",
                        help="comma-separated parts of file names to keep (default: all)")
    parser.add_argument("--no-stream", action="store_true",
                        help="server with ANALYSE_WHILE_UPLOADING=off (the job fetches)")
    args = parser.parse_args()
    admesh = shutil.which("admesh")
    print_machine()
    if admesh is None:
        print("admesh is not installed (apt-get install admesh): ratios skipped.\n")
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as folder:
        work = Path(folder)
        wanted = [part for part in args.only.split(",") if part] or [""]
        files = [p for p in _files(work, args.quick) if any(w in p.name for w in wanted)]
        print(f"server    ANALYSE_WHILE_UPLOADING={'off' if args.no_stream else 'on'}")
        with contextlib.ExitStack() as stack:
            base_url, token, pid = _server(stack, work, streamed=not args.no_stream)
            prestart()
            print(f"{'file':28s} {'triangles':>10s} {'MiB':>7s} | {'upload->DONE':>12s} "
                  f"{'answer->DONE':>12s} {'->checked':>9s} {'child':>7s} {'own':>7s} "
                  f"{'own all':>7s} {'peak/file':>9s} | {'admesh':>7s} {'API/admesh':>10s} "
                  f"{'own/admesh':>10s} {'all/admesh':>10s}")
            for path in files:
                _bench(path, base_url, token, pid, admesh, args.runs)


def _files(work: Path, quick: bool) -> list[Path]:
    files = []
    tiny = work / "box-1KB.stl"
    trimesh.creation.box((10, 20, 30)).export(tiny)
    files.append(tiny)
    files += [SHARED / name for name in CAD_FILES if (SHARED / name).is_file()]
    overlapping = work / "bosses-overlapping-150k.stl"
    _mechanical_part().export(overlapping)
    one_shell = work / "mechanical-one-shell.stl"
    _one_shell(_mechanical_part()).export(one_shell)
    files += [one_shell, overlapping]
    for subdivisions in (8,) if quick else (8, 9):
        path = work / f"icosphere-{subdivisions}.stl"
        trimesh.creation.icosphere(subdivisions=subdivisions, radius=50.0).export(path)
        files.append(path)
    return files


def _mechanical_part() -> trimesh.Trimesh:
    """A plate with 60 round bosses and holes, each boss its own shell overlapping the
    plate: 153,612 CAD-like triangles in 61 bodies."""
    plate = trimesh.creation.box((200, 120, 8))
    parts = [plate]
    for i in range(60):
        x, y = -90 + 18 * (i % 10), -50 + 20 * (i // 10)
        boss = trimesh.creation.annulus(r_min=3, r_max=6, height=12, sections=320)
        boss.apply_translation((x, y, 6))
        parts.append(boss)
    return trimesh.util.concatenate(parts)


def _one_shell(part: trimesh.Trimesh) -> trimesh.Trimesh:
    """The part as a CAD program exports it: one closed shell, the bosses merged into
    the plate (the overlapping shells above are the worst case: 61 bodies to unite)."""
    from manifold3d import Manifold, Mesh64, OpType

    solids = [
        Manifold(Mesh64(vert_properties=np.asarray(body.vertices, dtype=np.float64),
                        tri_verts=np.asarray(body.faces, dtype=np.uint64)))
        for body in part.split(only_watertight=False)
    ]
    mesh = Manifold.batch_boolean(solids, OpType.Add).to_mesh64()
    return trimesh.Trimesh(np.asarray(mesh.vert_properties)[:, :3], np.asarray(mesh.tri_verts))


def _server(stack: contextlib.ExitStack, work: Path, streamed: bool) -> tuple[str, str, int]:
    data_dir = work / "data"
    data_dir.mkdir()
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    env = child_env(
        DATA_DIR=str(data_dir),
        HOST=HOST,
        PORT=str(port),
        APP_ENV="development",
        MAX_UPLOAD_BYTES=str(300 * MIB),
        ANALYSE_WHILE_UPLOADING="on" if streamed else "off",
        RATE_LIMITS="upload_user=100000/hour,upload_ip=100000/hour,signup_ip=100000/hour",
    )
    log = work / "server.log"
    proc = stack.enter_context(
        subprocess_running([sys.executable, "server.py", "serve"], env, log)
    )
    wait_healthy(base_url, proc, "/healthz", log)
    token = sign_up(base_url, f"Analysis Bench {secrets.token_hex(3)}")
    return base_url, token, proc.pid


def _bench(path: Path, base_url: str, token: str, pid: int, admesh: str | None, runs: int):
    data = path.read_bytes()
    api, answered, checked, peaks = [], [], [], []
    child_times, own, own_all = [], [], []
    for run in range(runs + 1):
        total, after_answer, complete, peak = asyncio.run(
            _through_api(base_url, token, pid, path.name, data)
        )
        report, stats = run_isolated_with_stats(
            data, path.name, "stl", AnalysisOptions(), 300.0, 4096 * MIB
        )
        if run:  # the first is the warm-up
            api.append(total)
            answered.append(after_answer)
            checked.append(complete)
            peaks.append(peak)
            child_times.append(stats.seconds)
            to_first, to_end = _own(data, path.name)
            own.append(to_first)
            own_all.append(to_end)
    triangles = report.triangle_count
    line = (f"{path.name[:28]:28s} {triangles:>10,d} {len(data) / MIB:7.2f} | "
            f"{_s(api):>12s} {_s(answered):>12s} {_s(checked):>9s} {_s(child_times):>7s} "
            f"{_s(own):>7s} {_s(own_all):>7s} {statistics.median(peaks) / len(data):9.2f} |")
    if admesh is not None:
        theirs = statistics.median([_admesh(admesh, path) for _ in range(runs + 1)][1:])
        ratios = [statistics.median(values) / theirs for values in (api, own, own_all)]
        line += f" {theirs:6.3f}s " + " ".join(f"{ratio:9.2f}x" for ratio in ratios)
    print(line, flush=True)


def _own(data: bytes, name: str) -> tuple[float, float]:
    """`analyse` in this process: seconds to its first report (or its only one), and
    to its complete one."""
    first: list[float] = []
    started = time.perf_counter()
    mark = lambda _report: first.append(time.perf_counter())  # noqa: E731
    analyse(data, name, "stl", AnalysisOptions(), on_first=mark)
    ended = time.perf_counter()
    return (first[0] if first else ended) - started, ended - started


def _s(values: list[float]) -> str:
    return f"{statistics.median(values):.3f}s"


async def _through_api(
    base_url: str, token: str, pid: int, name: str, data: bytes
) -> tuple[float, float, float, int]:
    """Upload->DONE, answer->DONE, upload->checks done, and the children's peak RSS."""
    headers = {"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "1"}
    files = {
        "operations": (None, json.dumps({"query": UPLOAD, "variables": {"f": None}})),
        "map": (None, json.dumps({"0": ["variables.f"]})),
        "0": (name, data, "application/octet-stream"),
    }
    sampler = _PeakSampler(pid)
    sampler.start()
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=600) as client:
        started = time.perf_counter()
        response = await client.post("/graphql", files=files, headers=headers)
        answered = time.perf_counter()
        body = response.json()
        if body.get("errors"):
            raise SystemExit(f"upload of {name} failed: {body['errors'][0]['message']}")
        model_id = body["data"]["uploadModel"]["id"]
        done = None
        while True:
            reply = await client.post(
                "/graphql", json={"query": MODEL, "variables": {"id": model_id}}, headers=headers
            )
            model = reply.json()["data"]["model"]
            if model["analysisStatus"] == "FAILED":
                raise SystemExit(f"analysis of {name} failed: {model['analysisError']}")
            if model["analysisStatus"] == "DONE":
                done = done or time.perf_counter()
                if not model["metadata"]["printability"]["pendingChecks"]:
                    break
            await asyncio.sleep(POLL_S)
        complete = time.perf_counter()
    sampler.stop()
    return done - started, done - answered, complete - started, sampler.peak


class _PeakSampler(threading.Thread):
    """Largest RSS of any process below the server (the analysis children)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._root = psutil.Process(pid)
        self._halt = threading.Event()
        self.peak = 0

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(psutil.Error):
                for child in self._root.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        self.peak = max(self.peak, child.memory_info().rss)
            time.sleep(0.005)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _admesh(admesh: str, path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([admesh, str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
