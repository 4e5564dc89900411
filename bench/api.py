"""API throughput benchmark: the real server on SQLite and PostgreSQL, against a floor.

Prints figures only; it never passes or fails on time. It starts one subprocess per
target, each on a free loopback port, then drives each target's GraphQL query with a
fixed number of concurrent keep-alive clients and records every request's latency:

- floor: a bare strawberry schema served by uvicorn (`floor_app` below), `{ __typename }`;
  what the framework costs before the application does anything.
- sqlite / postgres: `server.py serve` on a fresh database (migrated at start),
  one user signed up over HTTP, then `{ me { company { name } } }` with its token.

After a warm-up, the measured time of each target is split into rounds that take
turns (floor, sqlite, postgres, floor, ...), so that a machine whose load drifts
during the run (other jobs, a shared CI runner) skews every target alike and the
ratios to the floor stay comparable.

A response counts as an error unless it is HTTP 200 with the expected data and no
`errors`. The exit status is 1 when a target could not run or had errors, else 0.
PostgreSQL (127.0.0.1:5432, user postgres, trust auth) is skipped, with the reason,
when it cannot be reached; its database `pv_bench_<random>` is dropped afterwards.

Run: `make bench` or `.venv/bin/python bench/api.py [--seconds 10] [--concurrency 16]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import strawberry
from strawberry.asgi import GraphQL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as bench/api.py

from bench.common import (
    HOST,
    TargetFailed,
    TargetSkipped,
    child_env,
    cpu_seconds,
    create_database,
    free_port,
    log_problems,
    on_sigterm,
    percentile,
    pg_url,
    print_machine,
    sign_up,
    subprocess_running,
    wait_healthy,
)

REQUEST_TIMEOUT = 10.0
MAX_REQUESTS_PER_CLIENT = 1_000_000  # per round: a bound on count next to the bound on time
TARGETS = ("floor", "sqlite", "postgres")

ME_QUERY = "{ me { company { name } } }"
FLOOR_QUERY = "{ __typename }"

Check = Callable[[Any], bool]


# --- the floor: a bare strawberry schema with one field ------------------------------


@strawberry.type(name="Query")
class FloorQuery:
    @strawberry.field
    def ok(self) -> bool:
        return True


# Served by `uvicorn bench.api:floor_app` (see start_floor).
floor_app = GraphQL(strawberry.Schema(query=FloorQuery), graphql_ide=None)


# --- targets and results ---------------------------------------------------------------


@dataclass
class Result:
    target: str
    requests: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    server_cpu_seconds: float | None = 0.0  # None where /proc cannot tell
    client_cpu_seconds: float = 0.0
    round_rps: list[float] = field(default_factory=list)
    note: str = ""  # set when the target was skipped or failed
    failed: bool = False

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        return percentile(self.latencies, p) * 1000


@dataclass
class Target:
    """A running server and what to ask it."""

    name: str
    url: str
    query: str
    token: str | None
    check: Check
    pid: int
    log_path: Path
    result: Result


# --- starting the targets --------------------------------------------------------------


def start_floor(stack: contextlib.ExitStack, workdir: Path) -> Target:
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log_path = workdir / "floor.log"
    cmd = [
        sys.executable, "-m", "uvicorn", "bench.api:floor_app",
        "--host", HOST, "--port", str(port),
        "--no-access-log", "--lifespan", "off", "--log-level", "warning",
    ]  # fmt: skip
    proc = stack.enter_context(subprocess_running(cmd, child_env(), log_path))
    wait_healthy(base_url, proc, "/graphql?query=%7B__typename%7D", log_path)
    return Target(
        name="floor",
        url=base_url + "/graphql",
        query=FLOOR_QUERY,
        token=None,
        check=lambda data: (data or {}).get("__typename") == "Query",
        pid=proc.pid,
        log_path=log_path,
        result=Result("floor"),
    )


def start_server(
    stack: contextlib.ExitStack, name: str, workdir: Path, database_url: str
) -> Target:
    """The real server on database_url, with its own DATA_DIR under workdir."""
    data_dir = workdir / f"data-{name}"
    data_dir.mkdir(exist_ok=True)
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log_path = workdir / f"server-{name}.log"
    env = child_env(
        DATA_DIR=str(data_dir),
        DATABASE_URL=database_url,
        HOST=HOST,
        PORT=str(port),
        APP_ENV="development",
    )
    cmd = [sys.executable, "server.py", "serve"]
    proc = stack.enter_context(subprocess_running(cmd, env, log_path))
    started = time.perf_counter()
    wait_healthy(base_url, proc, "/healthz", log_path)
    print(f"  {name}: server up (database migrated) in {time.perf_counter() - started:.1f} s")
    company = f"Bench GmbH {secrets.token_hex(3)}"
    started = time.perf_counter()
    token = sign_up(base_url, company)
    print(f"  {name}: signUp (Argon2id) took {time.perf_counter() - started:.2f} s")
    return Target(
        name=name,
        url=base_url + "/graphql",
        query=ME_QUERY,
        token=token,
        check=lambda data: ((data or {}).get("me") or {}).get("company", {}).get("name") == company,
        pid=proc.pid,
        log_path=log_path,
        result=Result(name),
    )


def start_postgres(stack: contextlib.ExitStack, workdir: Path) -> Target:
    # Registered in the stack first, so the database is dropped after the server stops.
    name = create_database(stack)
    return start_server(stack, "postgres", workdir, pg_url(name))


# --- load ------------------------------------------------------------------------------


async def _worker(
    client: httpx.AsyncClient,
    target: Target,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
    record: bool,
) -> None:
    result = target.result
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if time.perf_counter() >= deadline:
            return
        started = time.perf_counter()
        kind = ""
        try:
            response = await client.post(target.url, content=body, headers=headers)
            if response.status_code != 200:
                kind = f"HTTP {response.status_code}"
            else:
                payload = json.loads(response.content)
                if payload.get("errors"):
                    codes = {
                        str((e.get("extensions") or {}).get("code", "?")) for e in payload["errors"]
                    }
                    kind = "errors: " + ",".join(sorted(codes))
                elif not target.check(payload.get("data")):
                    kind = "unexpected data"
        except (httpx.HTTPError, ValueError) as error:
            kind = type(error).__name__
        elapsed = time.perf_counter() - started
        if record:
            result.requests += 1
            result.latencies.append(elapsed)
            if kind:
                result.errors += 1
                result.error_kinds[kind] += 1


async def _phase(
    target: Target, clients: list[httpx.AsyncClient], seconds: float, record: bool
) -> None:
    """All clients of one target, for `seconds`; recorded into target.result if record."""
    body = json.dumps({"query": target.query}).encode()
    headers = {"content-type": "application/json"}
    if target.token:
        headers["authorization"] = f"Bearer {target.token}"
    result = target.result
    requests_before = result.requests
    server_before = cpu_seconds(target.pid)
    client_before = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_worker(c, target, body, headers, deadline, record) for c in clients))
    elapsed = time.perf_counter() - started
    if not record:
        return
    server_after = cpu_seconds(target.pid)
    result.elapsed += elapsed
    result.client_cpu_seconds += time.process_time() - client_before
    if server_before is None or server_after is None or result.server_cpu_seconds is None:
        result.server_cpu_seconds = None
    else:
        result.server_cpu_seconds += server_after - server_before
    result.round_rps.append((result.requests - requests_before) / elapsed)


async def measure(targets: list[Target], args: argparse.Namespace) -> None:
    # In the loop, a SIGTERM cancels the measurement (asyncio.run then raises CancelledError).
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, list[httpx.AsyncClient]] = {}
        for target in targets:
            clients[target.name] = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        trust_env=False,  # no proxy: loopback only
                        timeout=REQUEST_TIMEOUT,
                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    )
                )
                for _ in range(args.concurrency)
            ]
        # Warm-up: open the connections, fill caches and pools; nothing is recorded.
        for target in targets:
            await _phase(target, clients[target.name], args.warmup, record=False)
        for number in range(1, args.rounds + 1):
            for target in targets:
                await _phase(target, clients[target.name], args.seconds / args.rounds, True)
            summary = "  ".join(f"{t.name} {t.result.round_rps[-1]:.0f}" for t in targets)
            print(f"  round {number}/{args.rounds} req/s: {summary}", flush=True)


# --- report ----------------------------------------------------------------------------


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    return format(value, spec) + suffix


def print_table(results: list[Result]) -> None:
    floor = next((r for r in results if r.target == "floor" and not r.note), None)
    header = (
        f"{'target':<10} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7} {'vs floor':>9} {'srv CPU':>8} {'cli CPU':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        if r.note:
            print(f"{r.target:<10} {r.note}")
            continue
        ratio = r.rps / floor.rps if floor and floor.rps else None
        server_cpu = (
            r.server_cpu_seconds / r.elapsed * 100
            if r.server_cpu_seconds is not None and r.elapsed
            else None
        )
        client_cpu = r.client_cpu_seconds / r.elapsed * 100 if r.elapsed else None
        print(
            f"{r.target:<10} {r.requests:>9} {r.rps:>9.0f} {_fmt(r.percentile_ms(50), '.2f'):>8} "
            f"{_fmt(r.percentile_ms(99), '.2f'):>8} {r.errors:>7} {_fmt(ratio, '.2f'):>9} "
            f"{_fmt(server_cpu, '.0f', '%'):>8} {_fmt(client_cpu, '.0f', '%'):>8}"
        )
    for r in results:
        for kind, count in r.error_kinds.most_common(5):
            print(f"  {r.target}: {count} x {kind}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per target")
    parser.add_argument("--rounds", type=int, default=5, help="turns the measured time takes")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded warm-up per target")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated subset of " + ",".join(TARGETS),
    )
    args = parser.parse_args(argv)
    if not (0 < args.seconds <= 600 and 0 <= args.warmup <= 60):
        parser.error("need 0 < --seconds <= 600 and 0 <= --warmup <= 60")
    if not (1 <= args.rounds <= 100 and 1 <= args.concurrency <= 256):
        parser.error("need 1 <= --rounds <= 100 and 1 <= --concurrency <= 256")
    args.targets = list(dict.fromkeys(t.strip() for t in args.targets.split(",") if t.strip()))
    unknown = set(args.targets) - set(TARGETS)
    if unknown or not args.targets:
        parser.error(f"--targets must name some of {', '.join(TARGETS)}")
    return args


def print_header(args: argparse.Namespace) -> None:
    print_machine()
    print(
        f"load      {args.concurrency} keep-alive clients per target (httpx, one asyncio loop), "
        f"{args.warmup:g} s warm-up + {args.seconds:g} s in {args.rounds} rounds, loopback"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    on_sigterm()
    print_header(args)

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="pv_bench_") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        starters: dict[str, Callable[[contextlib.ExitStack], Target]] = {
            "floor": lambda s: start_floor(s, workdir),
            "sqlite": lambda s: start_server(
                s, "sqlite", workdir, f"sqlite://{workdir / 'data-sqlite' / 'bench.sqlite3'}"
            ),
            "postgres": lambda s: start_postgres(s, workdir),
        }
        targets: list[Target] = []
        for name in args.targets:
            print(f"starting {name} ...", flush=True)
            # One stack per target: a target that fails is stopped at once, the others
            # keep running until the end of the measurement.
            with contextlib.ExitStack() as own:
                try:
                    targets.append(starters[name](own))
                except TargetSkipped as skipped:
                    print(f"PostgreSQL: SKIPPED ({skipped})")
                    results.append(Result(name, note=f"SKIPPED ({skipped})"))
                    continue
                except TargetFailed as error:
                    print(f"  {name}: FAILED: {error.summary}; log tail:\n{error.detail}")
                    results.append(Result(name, note=f"FAILED ({error.summary})", failed=True))
                    continue
                stack.enter_context(own.pop_all())
        if targets:
            print("measuring ...", flush=True)
            try:
                asyncio.run(measure(targets, args))
            except asyncio.CancelledError:
                raise SystemExit(143) from None  # SIGTERM: unwind, stopping everything
            finally:
                on_sigterm()  # the closed loop has reset SIGTERM to its default
            for target in targets:
                for line in log_problems(target.log_path):
                    print(f"  {target.name}: log: {line}")
    # Table in the order asked for, whatever started and whatever did not.
    by_name = {r.target: r for r in results} | {t.name: t.result for t in targets}
    print_table([by_name[name] for name in args.targets])
    print(
        "\nvs floor = req/s / floor req/s, over the same rounds. srv CPU = the server process's "
        "CPU (100% = one core); cli CPU = this load generator's (near 100%: the client may be "
        "the limit)."
    )
    return 1 if any(by_name[n].failed or by_name[n].errors for n in args.targets) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything is stopped and removed by now
        sys.exit(130)
