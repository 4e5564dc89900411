"""Upload benchmark: a 64 MB binary STL through `uploadModel`, end to end, against a floor.

Prints figures only; it never passes or fails on time. Two targets, each a subprocess
on a free loopback port:

- floor: a bare Starlette endpoint (`floor_app` below, served by uvicorn like the real
  server) that only runs python-multipart's streaming parser over the same multipart
  body, discards the file bytes (no spooling to disk), counts them and answers.
- server: `server.py serve` on a fresh database and a temporary DATA_DIR, one user
  signed up over HTTP; the request is the GraphQL multipart request of
  `tests/helpers.py::Api.upload` (`operations`, `map`, file part `0`, headers
  `Authorization: Bearer` and `Apollo-Require-Preflight`), timed until the response
  carrying the new model row with `analysisStatus: PENDING`.

The file is a valid binary STL (80-byte header, uint32 count, 50-byte triangles: a
height-field surface) generated with numpy in memory once per size; the client streams
the multipart body from an async generator in 1 MiB chunks with a declared
Content-Length, so it never assembles the body. For each upload the server process's
RSS is sampled by psutil every 20 ms from a thread; the figure is the peak during the
request minus the baseline just before it (plus, where Linux allows, the kernel's own
high-water mark, reset through /proc/PID/clear_refs before each upload, which misses
no spike between samples).

After each upload to the real server, the benchmark waits (not measured) until the
background analysis of that model has settled (DONE or FAILED), so that no analysis
overlaps the next measurement and the next baseline is taken at rest. The server runs
with ANALYSIS_TIMEOUT_SECONDS=1 by default (`--analysis-timeout`): the analysis of a
64 MB mesh then stops (FAILED, "exceeded 1 seconds") after the server has decrypted the
file and started the sandbox, instead of taking the CPU for many seconds.

Targets and sizes take turns in rounds (floor 16, server 16, floor 64, server 64, ...:
the smaller file first, so that the first 64 MB upload shows what a larger file adds to
a process that has already served a smaller one) after an unrecorded warm-up round.
For reference, the time to write and fsync the same bytes in the same temporary
directory (the server's object store fsyncs each upload) is measured once per size. At
the end the last stored file of each size is downloaded (`requestDownload`, streamed,
hashed) and compared with what was sent; a DONE analysis must report the triangle count
that was sent.

Run: `.venv/bin/python bench/upload.py [--rounds 5] [--sizes 64,16] [--database sqlite]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as bench/upload.py

from bench.common import (
    HOST,
    TargetFailed,
    TargetSkipped,
    child_env,
    cpu_seconds,
    create_database,
    fmt,
    free_port,
    log_problems,
    median,
    on_sigterm,
    pg_url,
    print_machine,
    sign_up,
    subprocess_running,
    wait_healthy,
)

MIB = 1024 * 1024
STL_HEADER = b"PrintVault bench/upload.py height field".ljust(80, b" ")
UPLOAD_TIMEOUT = 300.0  # one upload, connect to response
SETTLE_TIMEOUT = 180.0  # waiting for a model's background analysis to end
SAMPLE_INTERVAL = 0.02
MAX_SAMPLES = int(UPLOAD_TIMEOUT / SAMPLE_INTERVAL) + 100  # the sampler's bound on count
BOUNDARY = "pvbench" + secrets.token_hex(12)
UPLOAD_MUTATION = (
    "mutation($f: Upload!, $n: String) { uploadModel(file: $f, name: $n) "
    "{ id name fileName analysisStatus } }"
)
STATUS_QUERY = (
    "query($id: ID!) { model(id: $id) { analysisStatus analysisError "
    "metadata { triangleCount fileSize } } }"
)
DOWNLOAD_MUTATION = "mutation($id: ID!) { requestDownload(modelId: $id) { url } }"
# Generous: the benchmark measures throughput, not the limits.
RATE_LIMITS = "upload_user=100000/hour,upload_ip=100000/hour,signup_ip=100000/hour"


# --- the floor: parse the multipart body, discard the file ------------------------------


async def _floor_upload(request: Request) -> JSONResponse:
    """What any multipart upload endpoint must do at least: parse the stream, nothing else."""
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        return JSONResponse({"errors": [{"message": "no boundary"}]}, status_code=400)
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "file_bytes": 0}
    fields: dict[str, bytes] = {}

    def on_part_begin() -> None:
        state["headers"], state["is_file"], state["data"] = {}, False, bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"] = state["value"] = b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["name"] = disposition.get(b"name", b"").decode()
        state["is_file"] = b"filename" in disposition

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["is_file"]:
            state["file_bytes"] += end - start  # discarded
        else:
            state["data"] += data[start:end]

    def on_part_end() -> None:
        if not state["is_file"]:
            fields[state["name"]] = bytes(state["data"])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    async for chunk in request.stream():
        parser.write(chunk)
    parser.finalize()
    json.loads(fields["operations"]), json.loads(fields["map"])  # as the server reads them
    model = {"id": "floor", "analysisStatus": "PENDING", "fileBytes": state["file_bytes"]}
    return JSONResponse({"data": {"uploadModel": model}})


async def _floor_health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


# Served by `uvicorn bench.upload:floor_app` (see start_floor).
floor_app = Starlette(
    routes=[
        Route("/graphql", _floor_upload, methods=["POST"]),
        Route("/healthz", _floor_health, methods=["GET"]),
    ]
)


# --- the file ---------------------------------------------------------------------------


@dataclass
class StlFile:
    size_mb: int
    data: bytes  # the whole file, once, in this process
    triangles: int
    sha256: str

    @property
    def name(self) -> str:
        return f"bench-{self.size_mb}mb.stl"


def make_stl(size_mb: int) -> StlFile:
    """A binary STL of about size_mb MiB: a height-field surface, two triangles per cell."""
    import numpy as np  # only the benchmark process needs it, not the floor server

    triangles = (size_mb * MIB - 84) // 50
    cells = math.ceil(triangles / 2)
    side = math.isqrt(cells - 1) + 1  # side * side >= cells
    index = np.arange(triangles)
    cell, upper = index // 2, index % 2
    cx, cy = (cell % side).astype(np.float64), (cell // side).astype(np.float64)

    def corner(dx: np.ndarray | float, dy: np.ndarray | float) -> np.ndarray:
        x, y = cx + dx, cy + dy
        z = 5.0 + 2.0 * np.sin(x / 37.0) * np.cos(y / 53.0)  # mm
        return np.stack([x * 0.1, y * 0.1, z], axis=1)  # 0.1 mm grid

    # Lower triangle (0,0) (1,0) (1,1), upper (0,0) (1,1) (0,1): counter-clockwise from +z.
    b = corner(1.0, upper.astype(np.float64))  # (1,0) or (1,1)
    c = corner(1.0 - upper, 1.0)  # (1,1) or (0,1)
    a = corner(0.0, 0.0)
    records = np.zeros(triangles, dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    normal = np.cross(b - a, c - a)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    records["n"] = normal
    records["v"] = np.stack([a, b, c], axis=1)
    del a, b, c, normal  # before the file's bytes are made: less peak memory here
    data = STL_HEADER + triangles.to_bytes(4, "little") + records.tobytes()
    assert len(data) == 84 + 50 * triangles
    return StlFile(size_mb, data, triangles, hashlib.sha256(data).hexdigest())


def multipart_parts(stl: StlFile) -> tuple[bytes, bytes]:
    """The body before and after the file: operations, map, the file part's headers."""
    operations = {"query": UPLOAD_MUTATION, "variables": {"f": None, "n": stl.name}}

    def field_part(name: str, value: object) -> bytes:
        return (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: application/json\r\n\r\n{json.dumps(value)}\r\n"
        ).encode()

    head = (
        field_part("operations", operations)
        + field_part("map", {"0": ["variables.f"]})
        + (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="0"; '
            f'filename="{stl.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
    )
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


async def body_stream(head: bytes, data: bytes, tail: bytes, chunk: int) -> AsyncIterator[bytes]:
    """The multipart body in chunks; only one chunk at a time is copied out of `data`."""
    yield head
    view = memoryview(data)
    for offset in range(0, len(data), chunk):
        yield bytes(view[offset : offset + chunk])
    yield tail


# --- memory of the server process ------------------------------------------------------


class RssSampler:
    """psutil RSS of one process every SAMPLE_INTERVAL, from a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss(self) -> int:
        return self.process.memory_info().rss

    def baseline(self) -> int:
        """The median of five samples over 80 ms, before the upload starts."""
        values = []
        for _ in range(5):
            values.append(self.rss())
            time.sleep(SAMPLE_INTERVAL)
        return int(median(values))

    def _run(self) -> None:
        for _ in range(MAX_SAMPLES):
            try:
                self.peak = max(self.peak, self.rss())
            except psutil.Error:
                return
            self.samples += 1
            if self._stop.wait(SAMPLE_INTERVAL):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5.0)
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.rss())
        return self.peak


def reset_high_water_mark(pid: int) -> bool:
    """Reset the kernel's peak-RSS counter of pid (Linux: `5` into clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def high_water_mark(pid: int) -> int | None:
    """VmHWM of pid in bytes: its peak RSS since start or the last reset."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# --- targets and results ----------------------------------------------------------------


@dataclass
class Case:
    """One target at one size: the recorded uploads."""

    target: str
    size_mb: int
    seconds: list[float] = field(default_factory=list)
    body_bytes: int = 0
    rss_growth: list[int] = field(default_factory=list)
    hwm_growth: list[int] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)  # share of the upload's wall time
    server_cpu_seconds: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    settled: Counter[str] = field(default_factory=Counter)
    last_model_id: str | None = None
    first_growth: int | None = None  # the first upload of this case, warm-up or not
    last_baseline: int = 0
    hwm_available: bool = False
    # Peak RSS from the request's start until the model's analysis ended, minus the baseline.
    analysis_growth: list[int] = field(default_factory=list)

    @property
    def mbps(self) -> list[float]:
        return [self.body_bytes / MIB / s for s in self.seconds if s > 0]


@dataclass
class Target:
    name: str
    base_url: str
    token: str | None
    pid: int
    log_path: Path


def start_floor(stack: contextlib.ExitStack, workdir: Path) -> Target:
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log_path = workdir / "floor.log"
    cmd = [
        sys.executable, "-m", "uvicorn", "bench.upload:floor_app",
        "--host", HOST, "--port", str(port),
        "--no-access-log", "--lifespan", "off", "--log-level", "warning",
    ]  # fmt: skip
    proc = stack.enter_context(subprocess_running(cmd, child_env(), log_path))
    wait_healthy(base_url, proc, "/healthz", log_path)
    return Target("floor", base_url, None, proc.pid, log_path)


def start_server(
    stack: contextlib.ExitStack, workdir: Path, database: str, analysis_timeout: int
) -> Target:
    data_dir = workdir / "data-server"
    data_dir.mkdir()
    if database == "postgres":
        database_url = pg_url(create_database(stack))  # dropped after the server stops
    else:
        database_url = f"sqlite://{data_dir / 'bench.sqlite3'}"
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log_path = workdir / "server.log"
    env = child_env(
        DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        HOST=HOST,
        PORT=str(port),
        APP_ENV="development",
        MAX_UPLOAD_BYTES=str(128 * MIB),
        RATE_LIMITS=RATE_LIMITS,
        ANALYSIS_TIMEOUT_SECONDS=str(analysis_timeout),
    )
    proc = stack.enter_context(
        subprocess_running([sys.executable, "server.py", "serve"], env, log_path)
    )
    started = time.perf_counter()
    wait_healthy(base_url, proc, "/healthz", log_path)
    print(f"  server: up ({database}, database migrated) in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    token = sign_up(base_url, f"Upload Bench GmbH {secrets.token_hex(3)}")
    print(f"  server: signUp (Argon2id) took {time.perf_counter() - started:.2f} s")
    return Target("server", base_url, token, proc.pid, log_path)


# --- one upload -------------------------------------------------------------------------


async def upload_once(
    client: httpx.AsyncClient, target: Target, stl: StlFile, case: Case, chunk: int, record: bool
) -> bool:
    """One upload, timed and sampled; False when the answer was wrong (counted as an error)."""
    head, tail = multipart_parts(stl)
    length = len(head) + len(stl.data) + len(tail)
    headers = {
        "content-type": f"multipart/form-data; boundary={BOUNDARY}",
        "content-length": str(length),
        "apollo-require-preflight": "1",
    }
    if target.token:
        headers["authorization"] = f"Bearer {target.token}"
    sampler = RssSampler(target.pid)
    baseline = await asyncio.to_thread(sampler.baseline)
    hwm_reset = reset_high_water_mark(target.pid)
    case.last_baseline, case.hwm_available = baseline, hwm_reset
    server_before = cpu_seconds(target.pid)
    client_before = time.process_time()
    sampler.start()
    kind = ""
    payload: Any = None
    started = time.perf_counter()
    try:
        response = await client.post(
            target.base_url + "/graphql",
            content=body_stream(head, stl.data, tail, chunk),
            headers=headers,
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            kind = f"HTTP {response.status_code}: {response.text[:200]}"
        else:
            payload = response.json()
    except (httpx.HTTPError, ValueError) as error:
        elapsed = time.perf_counter() - started
        kind = type(error).__name__
    peak = await asyncio.to_thread(sampler.stop)
    hwm = high_water_mark(target.pid) if hwm_reset else None
    server_after = cpu_seconds(target.pid)
    client_cpu = time.process_time() - client_before
    if payload is not None:
        kind = check_answer(payload, target, stl)
    if kind:
        case.errors += 1
        case.error_kinds[kind] += 1
        print(f"    {target.name} {stl.size_mb} MB: ERROR {kind}", flush=True)
        return False
    case.last_model_id = payload["data"]["uploadModel"]["id"]
    if case.first_growth is None:
        case.first_growth = peak - baseline
    if not record:
        return True
    case.body_bytes = length
    case.seconds.append(elapsed)
    case.rss_growth.append(peak - baseline)
    if hwm is not None:
        case.hwm_growth.append(hwm - baseline)
    if server_before is not None and server_after is not None:
        case.server_cpu.append((server_after - server_before) / elapsed)
        case.server_cpu_seconds.append(server_after - server_before)
    case.client_cpu.append(client_cpu / elapsed)
    return True


def check_answer(payload: Any, target: Target, stl: StlFile) -> str:
    """'' when the answer is right, else what was wrong."""
    if not isinstance(payload, dict):
        return "not a JSON object"
    if payload.get("errors"):
        codes = {str((e.get("extensions") or {}).get("code", "?")) for e in payload["errors"]}
        return "errors: " + ",".join(sorted(codes))
    model = (payload.get("data") or {}).get("uploadModel") or {}
    if model.get("analysisStatus") != "PENDING" or not model.get("id"):
        return f"unexpected data: {str(model)[:200]}"
    if target.name == "floor" and model.get("fileBytes") != len(stl.data):
        return f"the floor counted {model.get('fileBytes')} file bytes, not {len(stl.data)}"
    if target.name == "server" and model.get("fileName") != stl.name:
        return f"unexpected fileName {model.get('fileName')!r}"
    return ""


async def gql(client: httpx.AsyncClient, target: Target, query: str, variables: dict) -> Any:
    response = await client.post(
        target.base_url + "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {target.token}"},
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise TargetFailed(f"{query.split('(')[0]}: {body['errors'][0].get('message')}")
    return body["data"]


async def settle(
    client: httpx.AsyncClient, target: Target, model_id: str, stl: StlFile, case: Case
) -> str:
    """Wait (bounded) until the model's background analysis has ended; not measured.

    Returns '' or what was wrong: a DONE analysis must report the triangles sent.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    status = "?"
    while time.monotonic() < deadline:
        model = (await gql(client, target, STATUS_QUERY, {"id": model_id}))["model"] or {}
        status = model.get("analysisStatus", "?")
        if status not in ("PENDING", "RUNNING"):
            error = (model.get("analysisError") or "")[:60]
            case.settled[f"{status}{': ' + error if error else ''}"] += 1
            metadata = model.get("metadata") or {}
            if status == "DONE" and (
                metadata.get("triangleCount") != stl.triangles
                or metadata.get("fileSize") != len(stl.data)
            ):
                return f"the analysis reports {metadata}, not {stl.triangles} triangles"
            return ""
        await asyncio.sleep(0.2)
    case.settled[f"still {status} after {SETTLE_TIMEOUT:.0f} s"] += 1
    return ""


async def verify_download(
    client: httpx.AsyncClient, target: Target, model_id: str, stl: StlFile
) -> str:
    """Download the stored file (streamed, hashed); '' when it equals what was sent."""
    link = (await gql(client, target, DOWNLOAD_MUTATION, {"id": model_id}))["requestDownload"]
    url = link["url"] if link["url"].startswith("http") else target.base_url + link["url"]
    digest, size = hashlib.sha256(), 0
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            return f"download answered HTTP {response.status_code}"
        async for chunk in response.aiter_bytes():
            digest.update(chunk)
            size += len(chunk)
    if digest.hexdigest() != stl.sha256:
        return f"the downloaded file differs ({size} bytes, sent {len(stl.data)})"
    return ""


def disk_write_seconds(directory: Path, data: bytes, chunk: int = MIB) -> float:
    """Median of three: write data in chunks to a new file under directory, fsync, remove."""
    times = []
    for number in range(3):
        path = directory / f"disk-reference-{number}"
        started = time.perf_counter()
        with open(path, "wb") as handle:
            view = memoryview(data)
            for offset in range(0, len(data), chunk):
                handle.write(view[offset : offset + chunk])
            handle.flush()
            os.fsync(handle.fileno())
        times.append(time.perf_counter() - started)
        path.unlink()
    return median(times)


# --- the run ----------------------------------------------------------------------------


async def measure(
    targets: list[Target],
    files: list[StlFile],
    cases: dict[tuple[str, int], Case],
    args: Any,
    rest_rss: dict[str, int],
) -> list[str]:
    """Warm-up round(s), then alternating rounds; returns problems found on verification.

    rest_rss receives the server's RSS at rest before the first upload and after the last.
    """
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    problems: list[str] = []
    chunk = args.chunk_kib * 1024
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            t.name: await stack.enter_async_context(
                httpx.AsyncClient(trust_env=False, timeout=UPLOAD_TIMEOUT)  # loopback, no proxy
            )
            for t in targets
        }
        order = [(stl, t) for stl in sorted(files, key=lambda f: f.size_mb) for t in targets]
        server = next((t for t in targets if t.name == "server"), None)
        if server:
            rest_rss["before"] = RssSampler(server.pid).rss()
        total = args.warmup_rounds + args.rounds
        for number in range(1, total + 1):
            record = number > args.warmup_rounds
            parts = []
            for stl, target in order:
                case = cases[(target.name, stl.size_mb)]
                client = clients[target.name]
                ok = await upload_once(client, target, stl, case, chunk, record)
                if record and ok:
                    parts.append(
                        f"{target.name} {stl.size_mb} MB {case.mbps[-1]:.0f} MB/s "
                        f"+{case.rss_growth[-1] / MIB:.1f} MB"
                    )
                if target.name == "server" and ok and case.last_model_id:
                    sampler = RssSampler(target.pid)
                    sampler.start()
                    problem = await settle(client, target, case.last_model_id, stl, case)
                    peak = await asyncio.to_thread(sampler.stop)
                    hwm = high_water_mark(target.pid) if case.hwm_available else None
                    if record:
                        case.analysis_growth.append(max(peak, hwm or 0) - case.last_baseline)
                    if problem and problem not in problems:
                        print(f"    server {stl.size_mb} MB: WRONG: {problem}", flush=True)
                        problems.append(problem)
            label = f"round {number - args.warmup_rounds}/{args.rounds}" if record else "warm-up"
            print(f"  {label}: " + ("  ".join(parts) or "done"), flush=True)
        if server:
            rest_rss["after"] = RssSampler(server.pid).rss()
        for stl in files:
            case = cases.get(("server", stl.size_mb))
            if server and case and case.last_model_id:
                problem = await verify_download(clients["server"], server, case.last_model_id, stl)
                print(f"  server {stl.size_mb} MB: download of the stored file "
                      f"{problem or 'matches what was sent (sha256)'}")  # fmt: skip
                if problem:
                    problems.append(problem)
    return problems


def print_table(cases: list[Case], rest_rss: dict[str, int], disk: dict[int, float]) -> None:
    header = (
        f"{'target':<7} {'size':>6} {'uploads':>7} {'MB/s':>6} {'min-max':>9} {'s':>6} "
        f"{'RSS +MB':>8} {'max':>5} {'1st':>5} {'HWM +MB':>8} {'/file MB':>8} "
        f"{'srv CPU':>8} {'CPU s':>6} {'cli CPU':>8} {'errors':>6} {'vs floor':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    floors = {c.size_mb: median(c.mbps) for c in cases if c.target == "floor" and c.seconds}
    for c in cases:
        speeds = c.mbps
        rss = median(c.rss_growth) / MIB if c.rss_growth else math.nan
        hwm = median(c.hwm_growth) / MIB if c.hwm_growth else math.nan
        most = max(c.rss_growth) / MIB if c.rss_growth else math.nan
        first = c.first_growth / MIB if c.first_growth is not None else math.nan
        floor = floors.get(c.size_mb)
        ratio = median(speeds) / floor if floor and speeds else math.nan
        span = f"{min(speeds):.0f}-{max(speeds):.0f}" if speeds else "-"
        server_cpu = median(c.server_cpu) * 100 if c.server_cpu else math.nan
        client_cpu = median(c.client_cpu) * 100 if c.client_cpu else math.nan
        cpu_s = median(c.server_cpu_seconds) if c.server_cpu_seconds else math.nan
        print(
            f"{c.target:<7} {c.size_mb:>3} MB {len(c.seconds):>7} {fmt(median(speeds), '.0f'):>6} "
            f"{span:>9} {fmt(median(c.seconds), '.3f'):>6} {fmt(rss, '.1f'):>8} "
            f"{fmt(most, '.1f'):>5} {fmt(first, '.1f'):>5} {fmt(hwm, '.1f'):>8} "
            f"{fmt(rss / c.size_mb, '.3f'):>8} {fmt(server_cpu, '.0f', '%'):>8} "
            f"{fmt(cpu_s, '.2f'):>6} "
            f"{fmt(client_cpu, '.0f', '%'):>8} {c.errors:>6} {fmt(ratio, '.2f'):>8}"
        )
    for c in cases:
        for kind, count in c.error_kinds.most_common(5):
            print(f"  {c.target} {c.size_mb} MB: {count} x {kind}")
        for status, count in c.settled.most_common():
            print(f"  {c.target} {c.size_mb} MB: background analysis ended {status} ({count}x)")
    print(
        "\nMB = 2^20 bytes. MB/s: multipart body bytes / (request start to response), median "
        "(and range) over the rounds; s: median seconds. RSS +MB: the process's peak RSS "
        "during an upload (psutil, every 20 ms) minus its RSS just before, median; max: the "
        "largest; 1st: the first upload of that case (warm-up); HWM +MB: as RSS +MB, from "
        "the kernel's high-water mark (no spike missed between samples); /file MB: RSS +MB "
        "per MB of file. srv CPU / cli CPU: the server's / this client's CPU over the upload "
        "(100% = one core); CPU s: the server's CPU seconds per upload (10 ms ticks), which "
        "other load on the machine changes less than the wall time. vs floor: median MB/s "
        "/ the floor's at the same size (the target is 0.80 or better)."
    )
    servers = {c.size_mb: c for c in cases if c.target == "server" and c.rss_growth}
    if servers:
        print(
            "server RSS growth per upload (median / max / first): "
            + "; ".join(
                f"{size} MB file {median(c.rss_growth) / MIB:.1f} / {max(c.rss_growth) / MIB:.1f}"
                f" / {fmt((c.first_growth or 0) / MIB, '.1f')} MB"
                for size, c in sorted(servers.items())
            )
        )
    analyses = {c.size_mb: c for c in cases if c.target == "server" and c.analysis_growth}
    if analyses:
        print(
            "server RSS growth until the background analysis ended (median / max): "
            + "; ".join(
                f"{size} MB file {median(c.analysis_growth) / MIB:.1f} / "
                f"{max(c.analysis_growth) / MIB:.1f} MB"
                for size, c in sorted(analyses.items())
            )
            + " (the analysis decrypts the whole file into the server's memory)"
        )
    if "before" in rest_rss and "after" in rest_rss:
        print(
            f"server RSS at rest: {rest_rss['before'] / MIB:.1f} MB before the first upload, "
            f"{rest_rss['after'] / MIB:.1f} MB after the last (its analysis settled)"
        )
    if disk:
        print(
            "disk reference (write + fsync of the same bytes in this process, same directory): "
            + ", ".join(
                f"{size} MB in {seconds:.3f} s ({size / seconds:.0f} MB/s)"
                for size, seconds in sorted(disk.items())
            )
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="recorded rounds")
    parser.add_argument("--warmup-rounds", type=int, default=1, help="unrecorded rounds first")
    parser.add_argument("--sizes", default="64,16", help="file sizes in MiB, comma-separated")
    parser.add_argument("--chunk-kib", type=int, default=1024, help="client chunk size")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--analysis-timeout", type=int, default=1, help="the server's ANALYSIS_TIMEOUT_SECONDS"
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = list(dict.fromkeys(int(s) for s in args.sizes.split(",") if s.strip()))
    except ValueError:
        parser.error("--sizes must be integers (MiB)")
    if not args.sizes or not all(1 <= s <= 120 for s in args.sizes):
        parser.error("--sizes must be between 1 and 120 MiB (the server is given 128 MiB)")
    if not (1 <= args.rounds <= 20 and 0 <= args.warmup_rounds <= 5):
        parser.error("need 1 <= --rounds <= 20 and 0 <= --warmup-rounds <= 5")
    if not (16 <= args.chunk_kib <= 16 * 1024 and 1 <= args.analysis_timeout <= 600):
        parser.error("need 16 <= --chunk-kib <= 16384 and 1 <= --analysis-timeout <= 600")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    on_sigterm()
    print_machine()
    print(
        f"load      one upload at a time, {args.warmup_rounds} warm-up + {args.rounds} "
        f"rounds of {', '.join(f'{s} MB' for s in args.sizes)} x floor, server; "
        f"{args.chunk_kib} KiB client chunks; server on {args.database}, "
        f"ANALYSIS_TIMEOUT_SECONDS={args.analysis_timeout}"
    )
    started = time.perf_counter()
    files = [make_stl(size) for size in args.sizes]
    print(
        "files     "
        + ", ".join(f"{f.name}: {f.triangles:,} triangles, {len(f.data):,} bytes" for f in files)
        + f" (generated in {time.perf_counter() - started:.1f} s)"
    )
    cases: dict[tuple[str, int], Case] = {
        (name, f.size_mb): Case(name, f.size_mb) for f in files for name in ("floor", "server")
    }
    failed = False
    problems: list[str] = []
    rest_rss: dict[str, int] = {}
    disk: dict[int, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="pv_bench_upload_") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        starters: dict[str, Callable[[], Target]] = {
            "floor": lambda: start_floor(stack, workdir),
            "server": lambda: start_server(stack, workdir, args.database, args.analysis_timeout),
        }
        targets: list[Target] = []
        for name, start in starters.items():
            print(f"starting {name} ...", flush=True)
            try:
                targets.append(start())
            except (TargetFailed, TargetSkipped) as error:
                detail = getattr(error, "detail", "")
                print(f"  {name}: FAILED: {error}" + (f"; log tail:\n{detail}" if detail else ""))
                failed = True
        if targets:
            disk = {f.size_mb: disk_write_seconds(workdir, f.data) for f in files}
            print("measuring ...", flush=True)
            try:
                problems = asyncio.run(measure(targets, files, cases, args, rest_rss))
            except asyncio.CancelledError:
                raise SystemExit(143) from None  # SIGTERM: unwind, stopping everything
            except TargetFailed as error:
                print(f"  FAILED: {error}")
                failed = True
            finally:
                on_sigterm()  # the closed loop has reset SIGTERM to its default
            for target in targets:
                for line in log_problems(target.log_path):
                    print(f"  {target.name}: log: {line}")
    print_table(list(cases.values()), rest_rss, disk)
    errors = sum(c.errors for c in cases.values())
    return 1 if failed or errors or problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything is stopped and removed by now
        sys.exit(130)
