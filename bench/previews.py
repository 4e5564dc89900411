"""Benchmark: web previews (GLB + PNG thumbnail) of 5 k, 1.3 M and 5 M triangles.

Part 1, the previews as built (`domain.previews.make_previews`): for a torus of
5,120 triangles, an icosphere of 1,310,720 and a torus of 5,242,880, the wall-clock
seconds of simplification + GLB + PNG, the child's peak resident memory (next to
the memory the input mesh alone took in that child), and the GLB's size next to the
PNG's. Each figure is the best of --runs runs, each in a fresh child process.

seconds excludes the imports (trimesh, scipy, Pillow, fast-simplification), shown
on their own: a child that has just run the analysis has most of them loaded.

Part 0, the production path (`production`): the STL bytes of the same three meshes
through `domain.previews.sandbox.run_previews`, the confined child a preview job
starts (fresh interpreter, analysis limits, Landlock; load + weld + simplify + GLB +
PNG), next to the analysis child (`run_isolated_with_stats`) on the same bytes in
the same run; wall clock, the child's peak memory (getrusage of the waited child),
and the STL's size next to the GLB's and the PNG's. Best of --runs.

Part 0b, end to end over the API (`api`): a real server (`server.py serve`,
embedded default); each mesh's STL uploaded over HTTP; the seconds from the
upload's answer to DONE (the analysis) and from DONE to `Model.preview` present
(the preview job: fetch, decrypt, the confined child, encrypt, store), polled every
50 ms; the peak RSS of any process below the server (sampled every 20 ms); then the
PNG and GLB fetched through their links (sizes as served).

Part 2, the thumbnail renderers side by side, each in its own fresh child process
(cold: import + first picture, as a preview job pays it; warm: a second picture),
drawing the same simplified mesh (the 5,120-triangle torus as it is, and the
200,000-triangle results of the 1.3 M icosphere and of the 5 M torus) from the
same fixed view at 512x512:

- `numpy`: the z-buffer rasteriser in domain/previews/raster.py (what is used),
- `vtk-egl` and `vtk-osmesa`: VTK's offscreen windows on Mesa's llvmpipe (PyPI
  `vtk`, Debian `libegl-mesa0`/`libosmesa6`), one llvmpipe thread (LP_NUM_THREADS=0),
- `pyrender-osmesa`: pyrender on PyOpenGL's OSMesa platform (Debian `libosmesa6`),
- `matplotlib`: mplot3d's Poly3DCollection on the Agg backend.

Part 3, the simplifiers side by side on the same two meshes down to 200,000
triangles: ours (vertex clustering to ~2x the budget, then fast-simplification),
fast-simplification alone, pyfqmr alone; seconds, peak memory and how far the
result's vertices lie from the exact sphere or torus.

The peers are optional (`pip install -e ".[bench-previews]"`, `make bench-previews`
installs them and the Debian libraries); a missing one prints SKIPPED. Their PNGs
are written to --out (synthetic meshes, not customer data) to be looked at.

    .venv/bin/python bench/previews.py [--runs 3] [--render-rounds 5]
        [--parts previews,render,simplify] [--out /tmp/previews-bench]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

MIB = 1024 * 1024
MESHES = {
    "torus-5k": ("torus", (64, 40)),
    "icosphere-1.3M": ("icosphere", (8,)),
    "torus-5M": ("torus", (2048, 1280)),
}
RENDER_MESHES = ("torus-5k", "icosphere-1.3M", "torus-5M")
SIMPLIFY_MESHES = ("icosphere-1.3M", "torus-5M")
RENDERERS = ("numpy", "vtk-egl", "vtk-osmesa", "pyrender-osmesa", "matplotlib")
CHILD_TIMEOUT_S = 600
# The environment a preview child would get: no display, one thread per library,
# Mesa's on-disk shader cache off (the child may not write files).
CHILD_ENV = {
    "PATH": os.defpath,
    "LC_ALL": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "LP_NUM_THREADS": "0",
    "MESA_SHADER_CACHE_DISABLE": "true",
    "PYTHONDONTWRITEBYTECODE": "1",
}


# --- the parent ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--render-rounds", type=int, default=5)
    parser.add_argument("--parts", default="production,api,previews,render,simplify")
    parser.add_argument("--out", default="/tmp/previews-bench")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    from bench.common import print_machine

    print_machine()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    if "production" in parts:
        _production_part(args)
    if "api" in parts:
        _api_part(args)
    if "previews" in parts:
        _previews_part(args, out)
    if "render" in parts:
        _render_part(args, out)
    if "simplify" in parts:
        _simplify_part()
    print(f"\nPNGs in {out} (look at them). peak: the child's peak resident memory during")
    print("the measured work; before/base: its resident memory just before it (interpreter,")
    print("numpy and the input mesh; for make_previews also its imports; for the renderers")
    print("the simplified mesh only).")
    print("threads: the child's thread count after rendering (1 = none started).")


def _production_part(args: argparse.Namespace) -> None:
    print("\n== production path: STL bytes -> confined preview child (run_previews) ==")
    print("(next to the analysis child on the same bytes; peak: the child's max RSS)")
    print(f"{'mesh':<16}{'triangles':>11}{'STL MiB':>9}{'preview s':>11}{'peak MiB':>10}"
          f"{'analysis s':>12}{'peak MiB':>10}{'GLB KiB':>9}{'PNG KiB':>9}")  # fmt: skip
    for name in MESHES:
        runs = [_run_child({"job": "production", "mesh": name}) for _ in range(args.runs)]
        failed = [r for r in runs if "failed" in r]
        if failed:
            print(f"{name:<16}FAILED: {failed[0]['failed']}")
            continue
        best = min(runs, key=lambda r: r["seconds"])
        analysis = min(r["analysis_seconds"] for r in runs)
        print(f"{name:<16}{best['triangles']:>11,}{best['stl_bytes'] / MIB:>9.1f}"
              f"{best['seconds']:>11.2f}{best['peak'] / MIB:>10.0f}"
              f"{analysis:>12.2f}{best['analysis_peak'] / MIB:>10.0f}"
              f"{best['glb_bytes'] / 1024:>9.0f}{best['png_bytes'] / 1024:>9.0f}")  # fmt: skip


def _api_part(args: argparse.Namespace) -> None:
    import contextlib
    import tempfile

    from bench.common import child_env, free_port, sign_up, subprocess_running, wait_healthy
    from tests import meshes_gen

    print("\n== end to end over the API: upload -> DONE -> preview (real server) ==")
    print(f"{'mesh':<16}{'triangles':>11}{'->DONE s':>10}{'->preview s':>13}"
          f"{'peak MiB':>10}{'GLB KiB':>9}{'PNG KiB':>9}")  # fmt: skip
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as work:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        env = child_env(
            DATA_DIR=str(Path(work) / "data"), HOST="127.0.0.1", PORT=str(port),
            APP_ENV="development", MAX_UPLOAD_BYTES=str(300 * MIB),
            RATE_LIMITS="upload_user=100000/hour,upload_ip=100000/hour,signup_ip=100000/hour",
        )  # fmt: skip
        log = Path(work) / "server.log"
        proc = stack.enter_context(
            subprocess_running([sys.executable, "server.py", "serve"], env, log)
        )
        wait_healthy(base_url, proc, "/healthz", log)
        token = sign_up(base_url, "Preview Bench")
        for name in MESHES:
            data = meshes_gen.binary_stl(_mesh(name))
            runs = [_through_api(base_url, token, proc.pid, name, data) for _ in range(args.runs)]
            best = min(runs, key=lambda r: r["preview"])
            print(f"{name:<16}{(len(data) - 84) // 50:>11,}{best['done']:>10.2f}"
                  f"{best['preview']:>13.2f}{best['peak'] / MIB:>10.0f}"
                  f"{best['glb'] / 1024:>9.0f}{best['png'] / 1024:>9.0f}", flush=True)  # fmt: skip


def _through_api(base_url: str, token: str, pid: int, name: str, data: bytes) -> dict:
    import threading

    import httpx
    import psutil

    upload = "mutation($f: Upload!) { uploadModel(file: $f) { id } }"
    query = """query($id: ID!) { model(id: $id) { analysisStatus analysisError
      preview { glbUrl pngUrl } } }"""
    headers = {"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "1"}
    files = {
        "operations": (None, json.dumps({"query": upload, "variables": {"f": None}})),
        "map": (None, json.dumps({"0": ["variables.f"]})),
        "0": (f"{name}.stl", data, "application/octet-stream"),
    }
    peak, stop = [0], threading.Event()

    def sample() -> None:
        server = psutil.Process(pid)
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                for child in server.children(recursive=True):
                    peak[0] = max(peak[0], child.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with httpx.Client(base_url=base_url, trust_env=False, timeout=600) as client:
        body = client.post("/graphql", files=files, headers=headers).json()
        answered = time.perf_counter()
        model_id = body["data"]["uploadModel"]["id"]
        done = None
        while True:
            model = client.post("/graphql", json={"query": query, "variables": {"id": model_id}},
                                headers=headers).json()["data"]["model"]  # fmt: skip
            if done is None and model["analysisStatus"] == "DONE":
                done = time.perf_counter()
            if model["analysisStatus"] == "FAILED":
                raise SystemExit(f"analysis of {name} failed: {model['analysisError']}")
            if model["preview"]:
                break
            time.sleep(0.05)
        ready = time.perf_counter()
        stop.set()
        sampler.join()
        glb = client.get(model["preview"]["glbUrl"]).content
        png = client.get(model["preview"]["pngUrl"]).content
    return {"done": (done or ready) - answered, "preview": ready - (done or ready),
            "peak": peak[0], "glb": len(glb), "png": len(png)}  # fmt: skip


def _child_production(job: dict) -> dict:
    """One measurement as the preview job runs it (a confined child of this process).

    Peak memory: RUSAGE_CHILDREN's ru_maxrss is the largest child waited for so far,
    so the preview child runs first (this process has waited for none before)."""
    import resource
    import tempfile

    from domain.analysis.options import AnalysisOptions
    from domain.analysis.sandbox import run_isolated_with_stats
    from domain.previews.sandbox import run_previews
    from runtime.settings import load_settings
    from tests import meshes_gen

    data = meshes_gen.binary_stl(_mesh(job["mesh"]))
    settings = load_settings({"DATA_DIR": tempfile.mkdtemp(prefix="pv-bench-")})
    options = AnalysisOptions.from_settings(settings)
    memory = settings.analysis_memory_bytes
    started = time.perf_counter()
    previews = run_previews(data, "stl", options, CHILD_TIMEOUT_S, memory)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    started = time.perf_counter()
    _, stats = run_isolated_with_stats(data, "b.stl", "stl", options, CHILD_TIMEOUT_S, memory)
    return {
        "triangles": (len(data) - 84) // 50,
        "stl_bytes": len(data),
        "seconds": seconds,
        "peak": peak,
        "analysis_seconds": time.perf_counter() - started,
        "analysis_peak": stats.peak_rss_bytes,
        "glb_bytes": len(previews.glb),
        "png_bytes": len(previews.png),
    }


def _previews_part(args: argparse.Namespace, out: Path) -> None:
    print("\n== previews as built: make_previews (simplify + GLB + PNG), fresh child each ==")
    print(f"{'mesh':<16}{'triangles':>11}{'in GLB':>9}{'seconds':>9}{'imports':>9}{'peak MiB':>10}"
          f"{'before':>10}{'GLB KiB':>9}{'PNG KiB':>9}")  # fmt: skip
    for name in MESHES:
        best = _best(args.runs, {"job": "previews", "mesh": name, "out": str(out)})
        if best is None:
            continue
        print(f"{name:<16}{best['triangles']:>11,}{best['glb_triangles']:>9,}"
              f"{best['seconds']:>9.2f}{best['imports']:>9.2f}"
              f"{best['peak'] / MIB:>10.0f}{best['base'] / MIB:>10.0f}"
              f"{best['glb_bytes'] / 1024:>9.0f}{best['png_bytes'] / 1024:>9.0f}")  # fmt: skip


def _render_part(args: argparse.Namespace, out: Path) -> None:
    print("\n== thumbnail renderers side by side: same simplified mesh, 512x512 ==")
    print(f"(best of {args.render_rounds} interleaved rounds, one fresh child per picture)")
    print(f"{'mesh':<16}{'renderer':<17}{'cold s':>8}{'warm s':>8}{'peak MiB':>10}"
          f"{'base MiB':>10}{'threads':>8}{'PNG KiB':>9}")  # fmt: skip
    for name in RENDER_MESHES:
        mesh = _simplified(name)
        best: dict[str, dict] = {}
        skipped: set[str] = set()
        for _ in range(args.render_rounds):
            for renderer in RENDERERS:
                if renderer in skipped:
                    continue
                job = {"job": "render", "mesh": name, "renderer": renderer, "out": str(out)}
                result = _run_child(job, mesh)
                if "skipped" in result or "failed" in result:
                    skipped.add(renderer)
                    best[renderer] = result
                elif renderer not in best or result["cold"] < best[renderer]["cold"]:
                    best[renderer] = result
        for renderer in RENDERERS:
            r = best[renderer]
            if "skipped" in r or "failed" in r:
                print(f"{name:<16}{renderer:<17}{'SKIPPED' if 'skipped' in r else 'FAILED'}: "
                      f"{r.get('skipped') or r.get('failed')}")  # fmt: skip
                continue
            print(f"{name:<16}{renderer:<17}{r['cold']:>8.2f}{r['warm']:>8.2f}"
                  f"{r['peak'] / MIB:>10.0f}{r['base'] / MIB:>10.0f}"
                  f"{r['threads']:>8}{r['png_bytes'] / 1024:>9.0f}")  # fmt: skip


def _simplify_part() -> None:
    print("\n== simplifiers side by side: unit-frame mesh down to 200,000 triangles ==")
    print("(one run each, fresh child)")
    print(f"{'mesh':<16}{'simplifier':<22}{'seconds':>9}{'peak MiB':>10}{'base MiB':>10}"
          f"{'triangles':>11}{'max dev %':>10}{'mean dev %':>11}")  # fmt: skip
    for name in SIMPLIFY_MESHES:
        for simplifier in SIMPLIFIERS:
            job = {"job": "simplify", "mesh": name, "simplifier": simplifier}
            best = _best(1, job)
            if best is None:
                continue
            print(f"{name:<16}{simplifier:<22}{best['seconds']:>9.2f}{best['peak'] / MIB:>10.0f}"
                  f"{best['base'] / MIB:>10.0f}{best['triangles']:>11,}"
                  f"{best['max_dev']:>10.3f}{best['mean_dev']:>11.4f}")  # fmt: skip
    print("dev: distance of the output's vertices from the exact sphere or torus, in % of the")
    print("model's size (the input's own vertices lie on it).")


def _best(runs: int, job: dict) -> dict | None:
    results = []
    for _ in range(runs):
        result = _run_child(job)
        if "skipped" in result or "failed" in result:
            label = f"{job['mesh']:<16}{job.get('renderer', ''):<17}"
            print(f"{label}{'SKIPPED' if 'skipped' in result else 'FAILED'}: "
                  f"{result.get('skipped') or result.get('failed')}")  # fmt: skip
            return None
        results.append(result)
    key = "cold" if job["job"] == "render" else "seconds"  # previews and simplify
    return min(results, key=lambda r: r[key])


def _simplified(name: str) -> bytes:
    """The mesh every renderer draws: prepared and simplified once, as .npz bytes."""
    from domain.previews import rules
    from domain.previews.geometry import compact
    from domain.previews.prepare import prepare
    from domain.previews.simplify import simplify

    unit = prepare(*_mesh(name))
    vertices, faces = compact(
        *simplify(unit.vertices, unit.faces, rules.MAX_GLB_TRIANGLES, unit.area)
    )
    buffer = io.BytesIO()
    np.savez(buffer, vertices=vertices, faces=faces)
    return buffer.getvalue()


def _run_child(job: dict, stdin: bytes = b"") -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=CHILD_ENV,
            input=stdin,
            capture_output=True,
            timeout=CHILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"no answer within {CHILD_TIMEOUT_S} s"}
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return {"failed": f"exit status {done.returncode} {' '.join(tail)}"}
    return json.loads(lines[-1])


# --- the child -------------------------------------------------------------------------


def _child(job: dict) -> None:
    if job["job"] == "production":
        print(json.dumps(_child_production(job)))
        sys.stdout.flush()
        os._exit(0)
    imports = _imports() if job["job"] == "previews" else 0.0
    if job["job"] == "render":
        arrays = np.load(io.BytesIO(sys.stdin.buffer.read()))
        vertices, faces = arrays["vertices"], arrays["faces"]
    else:
        vertices, faces = _mesh(job["mesh"])
    input_peak = _reset_hwm()
    if job["job"] == "previews":
        result = _child_previews(vertices, faces, job)
        result["imports"] = imports
    elif job["job"] == "render":
        result = _child_render(vertices, faces, job)
    else:
        result = _child_simplify(vertices, faces, job)
    result.setdefault("base", input_peak)
    result["peak"] = _hwm()
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # skip tearing down GL libraries and big arrays


def _mesh(name: str) -> tuple[np.ndarray, np.ndarray]:
    from tests import meshes_gen

    kind, parameters = MESHES[name]
    return getattr(meshes_gen, kind)(*parameters)


def _imports() -> float:
    """Seconds to import what the previews use, timed on their own: a child that has
    just analysed the model (the analysis imports trimesh and scipy too) pays only
    part of them."""
    started = time.perf_counter()
    import fast_simplification  # noqa: F401
    import PIL.Image  # noqa: F401
    import scipy.sparse.csgraph  # noqa: F401
    import trimesh  # noqa: F401

    import domain.previews  # noqa: F401

    return time.perf_counter() - started


def _child_previews(vertices: np.ndarray, faces: np.ndarray, job: dict) -> dict:
    from domain.previews import make_previews

    started = time.perf_counter()
    previews = make_previews(vertices, faces)
    seconds = time.perf_counter() - started
    Path(job["out"], f"previews-{job['mesh']}.png").write_bytes(previews.png)
    return {
        "seconds": seconds,
        "triangles": len(faces),
        "glb_triangles": previews.triangles,
        "glb_bytes": len(previews.glb),
        "png_bytes": len(previews.png),
    }


def _child_render(vertices: np.ndarray, faces: np.ndarray, job: dict) -> dict:
    small = (vertices, faces)
    base = _reset_hwm()  # the renderer's own peak from here
    render = RENDER_FUNCTIONS[job["renderer"]]
    try:
        started = time.perf_counter()
        png = render(*small)
        cold = time.perf_counter() - started
    except ImportError as error:
        return {"skipped": f"{error.name or error} is not installed"}
    started = time.perf_counter()
    render(*small)
    warm = time.perf_counter() - started
    Path(job["out"], f"render-{job['mesh']}-{job['renderer']}.png").write_bytes(png)
    return {
        "cold": cold, "warm": warm, "png_bytes": len(png), "threads": _threads(), "base": base
    }  # fmt: skip


def _child_simplify(vertices: np.ndarray, faces: np.ndarray, job: dict) -> dict:
    from domain.previews import rules
    from domain.previews.prepare import prepare

    unit = prepare(vertices, faces)
    del vertices, faces
    base = _reset_hwm()
    try:
        started = time.perf_counter()
        out_vertices, out_faces = SIMPLIFIERS[job["simplifier"]](unit, rules.MAX_GLB_TRIANGLES)
        seconds = time.perf_counter() - started
    except ImportError as error:
        return {"skipped": f"{error.name or error} is not installed"}
    deviation = _deviation(job["mesh"], out_vertices[np.unique(out_faces)] * unit.frame.size)
    return {
        "seconds": seconds,
        "base": base,
        "triangles": len(out_faces),
        "max_dev": 100 * float(deviation.max()) / unit.frame.size,
        "mean_dev": 100 * float(deviation.mean()) / unit.frame.size,
    }


def _deviation(mesh: str, points: np.ndarray) -> np.ndarray:
    """Distance (mm) of centred points from the exact surface the mesh samples."""
    kind, _ = MESHES[mesh]
    if kind == "icosphere":  # meshes_gen.icosphere: radius 10, centred
        return np.abs(np.linalg.norm(points, axis=1) - 10.0)
    ring = np.hypot(points[:, 0], points[:, 1])  # meshes_gen.torus: 30 and 10 around Z
    return np.abs(np.hypot(ring - 30.0, points[:, 2]) - 10.0)


def _simplify_ours(unit, budget: int):
    from domain.previews.simplify import simplify

    return simplify(unit.vertices, unit.faces, budget, unit.area)


def _simplify_fast_simplification(unit, budget: int):
    import fast_simplification

    return fast_simplification.simplify(
        unit.vertices, unit.faces.astype(np.int32), target_count=budget
    )


def _simplify_pyfqmr(unit, budget: int):
    import pyfqmr

    simplifier = pyfqmr.Simplify()
    simplifier.setMesh(unit.vertices, unit.faces.astype(np.int32))
    simplifier.simplify_mesh(target_count=budget, aggressiveness=7, verbose=False)
    out_vertices, out_faces, _ = simplifier.getMesh()
    return out_vertices, out_faces


SIMPLIFIERS = {
    "cluster+fast-simpl.": _simplify_ours,
    "fast-simplification": _simplify_fast_simplification,
    "pyfqmr": _simplify_pyfqmr,
}


def _hwm() -> int:
    return _status_field("VmHWM:") * 1024


def _reset_hwm() -> int:
    """Start VmHWM again from the current resident size (Linux: clear_refs "5")."""
    gc.collect()
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _hwm()


def _threads() -> int:
    return _status_field("Threads:")


def _status_field(name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name):
                return int(line.split()[1])
    return -1


# --- the candidates ----------------------------------------------------------------------
# Each draws unit-frame (vertices, faces) from the fixed view, the model filling
# rules.FILL of a 512x512 picture, base colour rules.BASE_COLOUR, and returns PNG bytes.


def _view_and_extent(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    from domain.previews.view import view_rotation

    view = vertices @ view_rotation().T
    low, high = view.min(axis=0), view.max(axis=0)
    centre = (low + high) / 2
    return view - centre, high - low, float(np.max((high - low)[:2]))


def render_numpy(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    from domain.previews.thumbnail import render_png

    return render_png(vertices, faces)


def _vtk(window_class: str):
    def render(vertices: np.ndarray, faces: np.ndarray) -> bytes:
        # Read when VTK's OpenGL module loads: which offscreen window to create.
        os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = window_class
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401 - registers the GL backend
        from vtkmodules.util.numpy_support import (
            numpy_to_vtk,
            numpy_to_vtkIdTypeArray,
            vtk_to_numpy,
        )
        from vtkmodules.vtkCommonCore import vtkPoints
        from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
        from vtkmodules.vtkIOImage import vtkPNGWriter
        from vtkmodules.vtkRenderingCore import (
            vtkActor,
            vtkPolyDataMapper,
            vtkRenderer,
            vtkRenderWindow,
            vtkWindowToImageFilter,
        )

        from domain.previews import rules

        view, _, extent = _view_and_extent(vertices)
        points = vtkPoints()
        points.SetData(numpy_to_vtk(np.ascontiguousarray(view), deep=True))
        cells = vtkCellArray()
        offsets = np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64)
        cells.SetData(
            numpy_to_vtkIdTypeArray(offsets, deep=True),
            numpy_to_vtkIdTypeArray(np.ascontiguousarray(faces.ravel(), dtype=np.int64), deep=True),
        )
        poly = vtkPolyData()
        poly.SetPoints(points)
        poly.SetPolys(cells)
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(poly)
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*rules.BASE_COLOUR)
        actor.GetProperty().SetInterpolationToFlat()
        renderer = vtkRenderer()
        renderer.AddActor(actor)
        renderer.SetBackground(1, 1, 1)
        # FXAA drew an all-black picture on llvmpipe here; multisampling instead.
        camera = renderer.GetActiveCamera()
        camera.ParallelProjectionOn()
        camera.SetPosition(0, 0, 2)
        camera.SetFocalPoint(0, 0, 0)
        camera.SetViewUp(0, 1, 0)
        camera.SetParallelScale(extent / 2 / rules.FILL)
        renderer.ResetCameraClippingRange()
        window = vtkRenderWindow()
        window.SetOffScreenRendering(1)
        window.SetMultiSamples(4)
        window.SetSize(rules.THUMBNAIL_PIXELS, rules.THUMBNAIL_PIXELS)
        window.AddRenderer(renderer)
        window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(window)
        grab.ReadFrontBufferOff()
        grab.Update()
        writer = vtkPNGWriter()
        writer.WriteToMemoryOn()  # in memory: no file
        writer.SetInputConnection(grab.GetOutputPort())
        writer.Write()
        png = vtk_to_numpy(writer.GetResult()).tobytes()
        window.Finalize()
        return png

    return render


def render_pyrender(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    os.environ["PYOPENGL_PLATFORM"] = "osmesa"  # read when PyOpenGL is first imported
    import pyrender
    import trimesh

    from domain.previews import rules
    from domain.previews.thumbnail import encode_png

    view, _, extent = _view_and_extent(vertices)
    material = pyrender.MetallicRoughnessMaterial(
        baseColorFactor=(*rules.BASE_COLOUR, 1.0), metallicFactor=0.0, roughnessFactor=0.8
    )
    mesh = pyrender.Mesh.from_trimesh(
        trimesh.Trimesh(view, faces, process=False), material=material, smooth=False
    )
    scene = pyrender.Scene(bg_color=(1.0, 1.0, 1.0, 1.0), ambient_light=(0.3, 0.3, 0.3))
    scene.add(mesh)
    pose = np.eye(4)
    pose[2, 3] = 2.0
    half = extent / 2 / rules.FILL
    scene.add(pyrender.OrthographicCamera(xmag=half, ymag=half, znear=0.01, zfar=10), pose=pose)
    scene.add(pyrender.DirectionalLight(intensity=2.0), pose=pose)
    renderer = pyrender.OffscreenRenderer(rules.THUMBNAIL_PIXELS, rules.THUMBNAIL_PIXELS)
    try:
        colour, _ = renderer.render(scene)  # RGB: its RGBA flag gave 3 channels here
    finally:
        renderer.delete()
    return encode_png(np.ascontiguousarray(colour))


def render_matplotlib(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from domain.previews import rules
    from domain.previews.thumbnail import _face_shades

    view, size, extent = _view_and_extent(vertices)
    shades = _face_shades(view, faces)[:, None] * np.asarray(rules.BASE_COLOUR)
    figure = Figure(figsize=(5.12, 5.12), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1), projection="3d")
    axes.set_proj_type("ortho")
    axes.view_init(elev=90, azim=-90)  # looking down view z: x right, y up
    axes.add_collection3d(Poly3DCollection(view[faces], facecolors=shades, linewidths=0))
    half = extent / 2 / rules.FILL
    axes.set(xlim=(-half, half), ylim=(-half, half), zlim=(-size[2] / 2, size[2] / 2))
    axes.set_box_aspect((1, 1, max(size[2], 1e-9) / (2 * half)))
    axes.set_axis_off()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", transparent=True)
    return buffer.getvalue()


RENDER_FUNCTIONS = {
    "numpy": render_numpy,
    "vtk-egl": _vtk("vtkEGLRenderWindow"),
    "vtk-osmesa": _vtk("vtkOSOpenGLRenderWindow"),
    "pyrender-osmesa": render_pyrender,
    "matplotlib": render_matplotlib,
}


if __name__ == "__main__":
    main()
