"""Pages at framework speed: `me` and a 20-model page against the floor, driven by wrk.

Prints figures only; it never passes or fails on time. Targets, each its own process
on a free loopback port (one uvicorn process each):

- floor: a bare strawberry schema (`bench.api:floor_app`), `{ __typename }`.
- me: `server.py serve` (SQLite, or PostgreSQL with --database postgres), one user
  signed up over HTTP, `{ me { firstName company { name } } }` with its token.
- models: the same server and user, after 20 models were uploaded over the API (tiny
  STL cubes, their analyses awaited until DONE), the page of issue 14:
  `{ models(first: 20) { edges { node { id name analysisStatus metadata { volume
  dimensions { x y z } } } } } }`.

Each request is checked once (HTTP 200, no `errors`, the expected data: 20 models
with metadata) before load; under load wrk counts non-2xx answers and socket errors.
The load is `wrk -t2 -c<connections> -d<seconds> --latency` with a Lua script that
POSTs the JSON body with the token; after a warm-up of each target the targets take
turns in rounds (floor, me, models, floor, ...) so that drifting load elsewhere on
the machine hits all alike. The figures: req/s summed over the rounds, p50 and p99
the median of the rounds' wrk percentiles, `vs floor` req/s over the floor's.

wrk is installed by `make bench-peers` (Debian's `wrk`); without it the benchmark
prints SKIPPED and exits 0.

Run: `.venv/bin/python bench/pages.py [--seconds 20] [--rounds 4] [--connections 16]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as bench/pages.py

from bench.common import (
    HOST,
    TargetFailed,
    TargetSkipped,
    child_env,
    cpu_seconds,
    create_database,
    fmt,
    free_port,
    median,
    on_sigterm,
    pg_url,
    print_machine,
    sign_up,
    subprocess_running,
    wait_healthy,
)
from bench.load import UPLOAD, cube_stl

FLOOR_QUERY = "{ __typename }"
ME_QUERY = "{ me { firstName company { name } } }"
MODELS_QUERY = (
    "{ models(first: 20) { edges { node { id name analysisStatus "
    "metadata { volume dimensions { x y z } } } } } }"
)
MODELS = 20
LIMITS = "upload_user=100000/hour,upload_ip=100000/hour,signup_ip=100000/hour"

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


@dataclass
class Target:
    name: str
    url: str
    body: str
    token: str | None
    pid: int
    script: Path
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    bad: int = 0
    cpu: float = 0.0


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string here (ASCII)


def write_script(workdir: Path, name: str, body: str, token: str | None) -> Path:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    path = workdir / f"{name}.lua"
    path.write_text(WRK_SCRIPT.format(body=_lua_string(body), auth=auth))
    return path


def check(url: str, body: str, token: str | None, expect: Any) -> None:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    response = httpx.post(url, content=body, headers=headers, trust_env=False, timeout=10)
    payload = response.json()
    if response.status_code != 200 or payload.get("errors") or not expect(payload.get("data")):
        raise TargetFailed(f"wrong answer: HTTP {response.status_code} {response.text[:300]}")


def upload_models(base_url: str, token: str, count: int) -> None:
    headers = {"authorization": f"Bearer {token}", "apollo-require-preflight": "1"}
    with httpx.Client(trust_env=False, timeout=30) as client:
        for number in range(count):
            operations = {"query": UPLOAD, "variables": {"f": None, "n": f"cube {number}"}}
            files = {
                "operations": (None, json.dumps(operations), "application/json"),
                "map": (None, json.dumps({"0": ["variables.f"]}), "application/json"),
                "0": (f"cube-{number}.stl", cube_stl(10.0 + number), "application/octet-stream"),
            }
            response = client.post(base_url + "/graphql", files=files, headers=headers)
            if response.status_code != 200 or "errors" in response.json():
                raise TargetFailed(f"upload failed: {response.text[:300]}")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            response = client.post(
                base_url + "/graphql",
                json={"query": "{ models(first: 100) { edges { node { analysisStatus } } } }"},
                headers={"authorization": f"Bearer {token}"},
            )
            statuses = [
                e["node"]["analysisStatus"] for e in response.json()["data"]["models"]["edges"]
            ]
            if "FAILED" in statuses:
                raise TargetFailed("an analysis FAILED")
            if statuses.count("DONE") == count:
                return
            time.sleep(0.5)
        raise TargetFailed("analyses not DONE within 180 s")


def start_floor(stack: contextlib.ExitStack, workdir: Path) -> Target:
    port = free_port()
    base = f"http://{HOST}:{port}"
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.api:floor_app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--lifespan",
        "off",
        "--log-level",
        "warning",
    ]
    log = workdir / "floor.log"
    proc = stack.enter_context(subprocess_running(cmd, child_env(), log))
    wait_healthy(base, proc, "/graphql?query=%7B__typename%7D", log)
    body = json.dumps({"query": FLOOR_QUERY})
    check(base + "/graphql", body, None, lambda d: (d or {}).get("__typename") == "Query")
    return Target(
        "floor", base + "/graphql", body, None, proc.pid, write_script(workdir, "floor", body, None)
    )


def start_server(stack: contextlib.ExitStack, workdir: Path, database: str) -> list[Target]:
    data_dir = workdir / "data"
    data_dir.mkdir()
    if database == "postgres":
        url = pg_url(create_database(stack))
    else:
        url = f"sqlite://{data_dir / 'bench.sqlite3'}"
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = child_env(
        DATA_DIR=str(data_dir),
        DATABASE_URL=url,
        HOST=HOST,
        PORT=str(port),
        APP_ENV="development",
        RATE_LIMITS=LIMITS,
    )
    log = workdir / "server.log"
    proc = stack.enter_context(subprocess_running([sys.executable, "server.py", "serve"], env, log))
    wait_healthy(base, proc, "/healthz", log)
    company = f"Bench GmbH {secrets.token_hex(3)}"
    token = sign_up(base, company)
    started = time.perf_counter()
    upload_models(base, token, MODELS)
    print(
        f"  server ({database}): {MODELS} models uploaded and analysed in "
        f"{time.perf_counter() - started:.1f} s"
    )
    me_body = json.dumps({"query": ME_QUERY})
    models_body = json.dumps({"query": MODELS_QUERY})

    def full_page(data: Any) -> bool:
        edges = ((data or {}).get("models") or {}).get("edges") or []
        return len(edges) == MODELS and all(e["node"]["metadata"]["volume"] > 0 for e in edges)

    check(
        base + "/graphql",
        me_body,
        token,
        lambda d: ((d or {}).get("me") or {}).get("company", {}).get("name") == company,
    )
    check(base + "/graphql", models_body, token, full_page)
    return [
        Target(
            "me",
            base + "/graphql",
            me_body,
            token,
            proc.pid,
            write_script(workdir, "me", me_body, token),
        ),
        Target(
            "models",
            base + "/graphql",
            models_body,
            token,
            proc.pid,
            write_script(workdir, "models", models_body, token),
        ),
    ]


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(target: Target, seconds: float, connections: int, record: bool) -> None:
    cmd = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        str(target.script),
        target.url,
    ]
    cpu_before = cpu_seconds(target.pid) or 0.0
    output = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    cpu_after = cpu_seconds(target.pid) or 0.0
    if not record:
        return
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", output).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    target.requests += requests
    target.seconds += requests / rps if rps else 0.0
    target.rps.append(rps)
    target.p50.append(_ms(percentiles["50"]))
    target.p99.append(_ms(percentiles["99"]))
    target.bad += int(bad.group(1)) if bad else 0
    target.bad += sum(int(x) for x in errors.groups()) if errors else 0
    target.cpu += cpu_after - cpu_before


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per target and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    on_sigterm()
    print_machine()
    if shutil.which("wrk") is None:
        print("wrk: SKIPPED (not installed; `make bench-peers` installs it)")
        return 0
    print(
        f"load      wrk -t2 -c{args.connections}, {args.warmup:g} s warm-up, "
        f"{args.rounds} rounds of {args.seconds:g} s per target, database {args.database}"
    )
    with tempfile.TemporaryDirectory(prefix="pv_bench_") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        try:
            targets = [start_floor(stack, workdir), *start_server(stack, workdir, args.database)]
        except TargetSkipped as skipped:
            print(f"PostgreSQL: SKIPPED ({skipped})")
            return 0
        except TargetFailed as error:
            print(f"FAILED: {error.summary}\n{error.detail}")
            return 1
        for target in targets:
            run_wrk(target, args.warmup, args.connections, record=False)
        for number in range(1, args.rounds + 1):
            for target in targets:
                run_wrk(target, args.seconds, args.connections, record=True)
            print(
                f"  round {number}/{args.rounds} req/s: "
                + "  ".join(f"{t.name} {t.rps[-1]:.0f}" for t in targets),
                flush=True,
            )
    print_table(targets)
    return 1 if any(t.bad for t in targets) else 0


def print_table(targets: list[Target]) -> None:
    floor = targets[0]
    floor_rps = floor.requests / floor.seconds if floor.seconds else 0.0
    header = (
        f"{'target':<8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'bad':>5} {'vs floor':>9} {'srv CPU ms/req':>15}"
    )
    print()
    print(header)
    print("-" * len(header))
    for t in targets:
        rps = t.requests / t.seconds if t.seconds else 0.0
        ratio = rps / floor_rps if floor_rps else None
        cpu_ms = t.cpu / t.requests * 1000 if t.requests else None
        print(
            f"{t.name:<8} {t.requests:>9} {rps:>8.0f} {fmt(median(t.p50), '.2f'):>8} "
            f"{fmt(median(t.p99), '.2f'):>8} {t.bad:>5} {fmt(ratio, '.2f'):>9} "
            f"{fmt(cpu_ms, '.2f'):>15}"
        )
    print(
        "\np50/p99: median over the rounds of wrk's percentiles; vs floor: req/s over the "
        "floor's; bad: non-2xx answers and socket errors (must be 0)."
    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
