"""Load benchmark: a mixed workload of many users against ONE and against TWO server processes.

Prints figures only; it never passes or fails on time. Two `server.py serve` processes
on free loopback ports share one fresh PostgreSQL database (`pv_bench_<random>`,
dropped afterwards), one object store directory, the same MASTER_KEYS and SECRET_KEY
(as a scaled-out deployment must), and Redis for the rate-limit counters
(`REDIS_URL=redis://127.0.0.1:6379/0` with a unique RATE_LIMIT_PREFIX whose keys are
deleted afterwards). JOB_BROKER_URL is unset: each server analyses its own uploads
in-process. The second server starts only after the first is healthy (the first
migrates the fresh database).

Set-up, not measured: --users users sign up over HTTP (Argon2id), each uploads
--models small binary STL cubes (GraphQL multipart, as `tests/helpers.py::Api.upload`),
and the benchmark waits until every analysis is DONE, so `model { metadata }` has data.

Then each user is one closed-loop client (its own httpx keep-alive connections, no think
time) that picks operations at random from a fixed mix: `logIn` (Argon2id, ~0.1-0.2 s of
CPU each, so only 2% by default), `me`, `models`, `model` with its metadata and latest
comments, and `addComment`. After a warm-up of each configuration, the configurations take
turns in rounds: `one` sends every user to server A; `two` spreads the users round-robin
over A and B (user i on server i % 2). Both servers run throughout; in `one` B idles.

Every answer is checked (HTTP 200, no `errors`, the data the user should see). An error
with code RATE_LIMITED is counted apart from the errors; RATE_LIMITS is set generously,
so that the benchmark measures throughput, not the limits, and none are expected. The
exit status is 1 when the run could not be set up or an answer was wrong.

Run: `.venv/bin/python bench/load.py [--seconds 40] [--users 50] [--rounds 4]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import secrets
import signal
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as bench/load.py

from bench.common import (
    HOST,
    PASSWORD,
    SIGN_UP,
    TargetFailed,
    TargetSkipped,
    child_env,
    cpu_seconds,
    create_database,
    fmt,
    free_port,
    log_problems,
    on_sigterm,
    percentile,
    pg_url,
    print_machine,
    sign_up_variables,
    subprocess_running,
    wait_healthy,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
REQUEST_TIMEOUT = 30.0
SETUP_TIMEOUT = 600.0  # sign-ups, uploads and their analyses, all together
SETUP_CONCURRENCY = 4  # sign-ups and uploads in flight during set-up
MAX_REQUESTS_PER_USER = 1_000_000  # per phase: a bound on count next to the bound on time
# Generous: the benchmark measures throughput, not the limits (each user logs in again
# and again; all users share the one loopback IP).
RATE_LIMITS = ",".join(
    f"{rule}=1000000/hour"
    for rule in (
        "login_ip",
        "login_account",
        "otp_account",
        "signup_ip",
        "upload_user",
        "upload_ip",
        "order_request_user",
        "order_step_user",
    )
)
CONFIGS = ("one", "two")


def rate_limits(account_limits: str) -> str:
    """The per-account log-in limits as shipped, or generous like the rest."""
    if account_limits == "generous":
        return RATE_LIMITS
    parts = RATE_LIMITS.split(",")
    return ",".join(part for part in parts if not part.startswith("login_account="))


DEFAULT_MIX = "logIn=2,me=24,models=24,model=30,addComment=20"
OPERATIONS = ("logIn", "me", "models", "model", "addComment")

LOG_IN = "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }"
ME = "{ me { id email company { name } } }"
MODELS = (
    "{ models(first: 20) { edges { node { id name analysisStatus } } "
    "pageInfo { hasNextPage endCursor } } }"
)
MODEL = (
    "query($id: ID!) { model(id: $id) { id name fileName analysisStatus "
    "metadata { fileSize format triangleCount bodyCount volume surfaceArea isWatertight "
    "dimensions { x y z } printability { printable issues { code severity } } } "
    "comments(first: 5) { edges { node { id body createdAt } } } } }"
)
ADD_COMMENT = (
    "mutation($m: ID!, $b: String!) { addComment(modelId: $m, body: $b) { id body createdAt } }"
)
UPLOAD = (
    "mutation($f: Upload!, $n: String) { uploadModel(file: $f, name: $n) "
    "{ id name analysisStatus } }"
)

CUBE_CORNERS = [
    (0, 0, 0),
    (1, 0, 0),
    (1, 1, 0),
    (0, 1, 0),
    (0, 0, 1),
    (1, 0, 1),
    (1, 1, 1),
    (0, 1, 1),
]
CUBE_FACES = [
    (0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4),
    (1, 2, 6), (1, 6, 5), (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7),
]  # fmt: skip


def cube_stl(size: float) -> bytes:
    """A closed, outward-facing cube of edge `size` mm as binary STL (12 triangles)."""
    out = bytearray(b"PrintVault bench/load.py cube".ljust(80, b" "))
    out += struct.pack("<I", len(CUBE_FACES))
    for face in CUBE_FACES:
        out += struct.pack("<3f", 0.0, 0.0, 0.0)
        for corner in face:
            out += struct.pack("<3f", *(size * c for c in CUBE_CORNERS[corner]))
        out += b"\0\0"
    return bytes(out)


# --- servers ----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    base_url: str
    pid: int
    log_path: Path

    @property
    def url(self) -> str:
        return self.base_url + "/graphql"


def start_server(
    stack: contextlib.ExitStack, name: str, workdir: Path, shared: dict[str, str]
) -> Server:
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log_path = workdir / f"server-{name}.log"
    env = child_env(HOST=HOST, PORT=str(port), APP_ENV="development", **shared)
    proc = stack.enter_context(
        subprocess_running([sys.executable, "server.py", "serve"], env, log_path)
    )
    started = time.perf_counter()
    wait_healthy(base_url, proc, "/healthz", log_path)
    print(f"  server {name}: up on port {port} in {time.perf_counter() - started:.1f} s")
    return Server(name, base_url, proc.pid, log_path)


def check_redis() -> None:
    """TargetSkipped unless Redis answers PING at REDIS_URL."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:
        raise TargetSkipped(f"Redis at {REDIS_URL}: {type(error).__name__}: {error}") from None


def delete_redis_keys(prefix: str) -> None:
    """Remove the rate-limit counters this run left under its own prefix (bounded)."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
        try:
            keys = []
            for number, key in enumerate(client.scan_iter(match=f"{prefix}*", count=1000)):
                if number >= 1_000_000:
                    break
                keys.append(key)
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        finally:
            client.close()
        print(f"  redis: deleted {len(keys)} keys under {prefix}")
    except Exception as error:  # report it and go on; the keys expire by themselves
        print(f"  redis: could not delete keys under {prefix}: {error}")


# --- users and results ------------------------------------------------------------------


@dataclass
class User:
    index: int
    email: str
    company: str
    token: str = ""
    model_ids: list[str] = field(default_factory=list)
    client: httpx.AsyncClient | None = None
    rng: random.Random = field(default_factory=random.Random)
    comments: int = 0


@dataclass
class OpStats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    rate_limited: int = 0


@dataclass
class Result:
    config: str
    elapsed: float = 0.0
    ops: dict[str, OpStats] = field(default_factory=lambda: {op: OpStats() for op in OPERATIONS})
    error_kinds: Counter[str] = field(default_factory=Counter)
    server_cpu: dict[str, float] = field(default_factory=dict)  # server name -> CPU seconds
    client_cpu: float = 0.0
    machine_busy: float = 0.0  # CPU seconds of the whole machine (all cores)
    round_rps: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(len(s.latencies) for s in self.ops.values())

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.ops.values())

    @property
    def rate_limited(self) -> int:
        return sum(s.rate_limited for s in self.ops.values())

    def all_latencies(self) -> list[float]:
        return [x for s in self.ops.values() for x in s.latencies]


# --- one request ------------------------------------------------------------------------


async def call(
    client: httpx.AsyncClient, url: str, query: str, variables: dict, token: str | None
) -> tuple[Any, str]:
    """(data, '') or (None, what went wrong); 'RATE_LIMITED' when that was the only error."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    body = json.dumps({"query": query, "variables": variables}).encode()
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return None, type(error).__name__
    try:
        payload = json.loads(response.content)
    except ValueError:
        return None, f"HTTP {response.status_code} (not JSON)"
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if errors:
        codes = sorted({str((e.get("extensions") or {}).get("code", "?")) for e in errors})
        return None, "RATE_LIMITED" if codes == ["RATE_LIMITED"] else "errors: " + ",".join(codes)
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}"
    return payload.get("data"), ""


async def operate(user: User, op: str, server: Server) -> str:
    """Run one operation as user against server; '' when the answer was right."""
    assert user.client is not None
    client, url = user.client, server.url
    if op == "logIn":
        data, problem = await call(client, url, LOG_IN, {"e": user.email, "p": PASSWORD}, None)
        if problem:
            return problem
        token = ((data or {}).get("logIn") or {}).get("token")
        if not token:
            return "logIn: no token"
        user.token = token  # the new session from now on; the old one stays valid
        return ""
    if op == "me":
        data, problem = await call(client, url, ME, {}, user.token)
        if problem:
            return problem
        me = (data or {}).get("me") or {}
        ok = me.get("email") == user.email and (me.get("company") or {}).get("name") == user.company
        return "" if ok else "me: unexpected data"
    if op == "models":
        data, problem = await call(client, url, MODELS, {}, user.token)
        if problem:
            return problem
        edges = ((data or {}).get("models") or {}).get("edges") or []
        ids = sorted(edge["node"]["id"] for edge in edges)
        return "" if ids == sorted(user.model_ids) else "models: unexpected data"
    if op == "model":
        model_id = user.rng.choice(user.model_ids)
        data, problem = await call(client, url, MODEL, {"id": model_id}, user.token)
        if problem:
            return problem
        model = (data or {}).get("model") or {}
        metadata = model.get("metadata") or {}
        ok = model.get("id") == model_id and metadata.get("triangleCount") == len(CUBE_FACES)
        return "" if ok else "model: unexpected data"
    if op == "addComment":
        model_id = user.rng.choice(user.model_ids)
        user.comments += 1
        text = f"bench comment {user.index}-{user.comments}"
        variables = {"m": model_id, "b": text}
        data, problem = await call(client, url, ADD_COMMENT, variables, user.token)
        if problem:
            return problem
        comment = (data or {}).get("addComment") or {}
        return (
            ""
            if comment.get("body") == text and comment.get("id")
            else "addComment: unexpected data"
        )
    raise ValueError(op)


# --- set-up -----------------------------------------------------------------------------


async def set_up(users: list[User], servers: list[Server], models_per_user: int) -> None:
    """Sign every user up, upload their models, wait for every analysis: not measured."""
    deadline = time.monotonic() + SETUP_TIMEOUT
    slots = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def sign_up_one(user: User) -> None:
        server = servers[user.index % len(servers)]
        assert user.client is not None
        async with slots:
            data, problem = await call(
                user.client, server.url, SIGN_UP, sign_up_variables(user.email, user.company), None
            )
        if problem:
            raise TargetFailed(f"signUp of user {user.index} failed: {problem}")
        user.token = data["signUp"]["token"]

    async def upload_one(user: User, number: int) -> None:
        server = servers[user.index % len(servers)]
        assert user.client is not None
        operations = {"query": UPLOAD, "variables": {"f": None, "n": f"cube {number}"}}
        files = {
            "operations": (None, json.dumps(operations), "application/json"),
            "map": (None, json.dumps({"0": ["variables.f"]}), "application/json"),
            "0": (f"cube-{number}.stl", cube_stl(10.0 + number), "application/octet-stream"),
        }
        headers = {"authorization": f"Bearer {user.token}", "apollo-require-preflight": "1"}
        async with slots:
            response = await user.client.post(server.url, files=files, headers=headers)
        try:
            model = response.json()["data"]["uploadModel"]
            user.model_ids.append(model["id"])
        except (ValueError, KeyError, TypeError):
            raise TargetFailed(
                f"upload of user {user.index} failed: HTTP {response.status_code}",
                "    | " + response.text[:500],
            ) from None

    started = time.perf_counter()
    await asyncio.gather(*(sign_up_one(user) for user in users))
    signed = time.perf_counter()
    print(f"  set-up: {len(users)} sign-ups (Argon2id) in {signed - started:.1f} s", flush=True)
    await asyncio.gather(
        *(upload_one(user, number) for user in users for number in range(models_per_user))
    )
    uploaded = time.perf_counter()
    count = len(users) * models_per_user
    print(f"  set-up: {count} uploads in {uploaded - signed:.1f} s", flush=True)
    pending = list(users)
    for _ in range(100_000):  # bounded by count as well as by the deadline
        still = []
        for user in pending:
            assert user.client is not None
            server = servers[user.index % len(servers)]
            data, problem = await call(user.client, server.url, MODELS, {}, user.token)
            if problem:
                raise TargetFailed(f"models of user {user.index}: {problem}")
            statuses = [e["node"]["analysisStatus"] for e in data["models"]["edges"]]
            if "FAILED" in statuses:
                raise TargetFailed(f"an analysis of user {user.index} FAILED")
            if statuses.count("DONE") != len(user.model_ids):
                still.append(user)
        pending = still
        if not pending:
            break
        if time.monotonic() > deadline:
            raise TargetFailed(f"analyses not DONE within {SETUP_TIMEOUT:.0f} s")
        await asyncio.sleep(1.0)
    print(f"  set-up: {count} analyses DONE after {time.perf_counter() - uploaded:.1f} s more")


# --- load -------------------------------------------------------------------------------


async def _user_loop(
    user: User,
    server: Server,
    ops: list[str],
    weights: list[float],
    deadline: float,
    result: Result | None,
) -> None:
    for _ in range(MAX_REQUESTS_PER_USER):
        if time.perf_counter() >= deadline:
            return
        op = user.rng.choices(ops, weights)[0]
        started = time.perf_counter()
        problem = await operate(user, op, server)
        elapsed = time.perf_counter() - started
        if result is None:
            continue
        stats = result.ops[op]
        stats.latencies.append(elapsed)
        if problem == "RATE_LIMITED":
            stats.rate_limited += 1
        elif problem:
            stats.errors += 1
            result.error_kinds[f"{op}: {problem}"] += 1


def _postgres_cpu() -> float:
    """CPU seconds of all `postgres` processes now (every database on the machine)."""
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] == "postgres" and process.info["cpu_times"] is not None:
            times = process.info["cpu_times"]
            total += times.user + times.system
    return total


def _machine_busy() -> float:
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle


async def phase(
    config: str,
    users: list[User],
    servers: list[Server],
    mix: dict[str, float],
    seconds: float,
    result: Result | None,
) -> None:
    """All users for `seconds` against config's servers; recorded into result if given."""
    used = servers[:1] if config == "one" else servers
    ops, weights = list(mix), list(mix.values())
    before = {s.name: cpu_seconds(s.pid) for s in used}
    requests_before = result.requests if result else 0
    client_before = time.process_time()
    machine_before = _machine_busy()
    postgres_before = _postgres_cpu()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(
            _user_loop(user, used[user.index % len(used)], ops, weights, deadline, result)
            for user in users
        )
    )
    elapsed = time.perf_counter() - started
    if result is None:
        return
    result.elapsed += elapsed
    result.client_cpu += time.process_time() - client_before
    result.machine_busy += _machine_busy() - machine_before
    result.server_cpu["postgres"] = (
        result.server_cpu.get("postgres", 0.0) + _postgres_cpu() - postgres_before
    )
    for server in used:
        after, prior = cpu_seconds(server.pid), before[server.name]
        if after is not None and prior is not None:
            result.server_cpu[server.name] = result.server_cpu.get(server.name, 0.0) + after - prior
    result.round_rps.append((result.requests - requests_before) / elapsed)


async def run(servers: list[Server], args: argparse.Namespace, results: dict[str, Result]) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    run_tag = secrets.token_hex(3)
    users = [
        User(
            index=index,
            email=f"load-{run_tag}-{index}@example.com",
            company=f"Load {run_tag} {index} GmbH",
            rng=random.Random(args.seed * 100_003 + index),
        )
        for index in range(args.users)
    ]
    async with contextlib.AsyncExitStack() as stack:
        for user in users:
            user.client = await stack.enter_async_context(
                httpx.AsyncClient(
                    trust_env=False,  # no proxy: loopback only
                    timeout=REQUEST_TIMEOUT,
                    # One keep-alive connection per server: a user is one browser tab.
                    limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
                )
            )
        print("setting up (not measured) ...", flush=True)
        await set_up(users, servers, args.models)
        print("measuring ...", flush=True)
        for config in CONFIGS:  # warm-up: open the connections, fill the pools
            await phase(config, users, servers, args.mix, args.warmup, None)
        for number in range(1, args.rounds + 1):
            for config in CONFIGS:
                await phase(
                    config, users, servers, args.mix, args.seconds / args.rounds, results[config]
                )
            summary = "  ".join(f"{c} {results[c].round_rps[-1]:.0f}" for c in CONFIGS)
            print(f"  round {number}/{args.rounds} req/s: {summary}", flush=True)


# --- report -----------------------------------------------------------------------------


def print_tables(results: dict[str, Result], mix: dict[str, float]) -> None:
    header = (
        f"{'config':<7} {'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'rate-lim':>8} {'srv A':>6} {'srv B':>6} {'ms/req':>6} {'pg CPU':>7} {'cli CPU':>8} "
        f"{'machine':>8} {'others':>7}"
    )
    print()
    print(header)
    print("-" * len(header))
    for config in CONFIGS:
        r = results[config]
        latencies = r.all_latencies()
        servers = sum(v for k, v in r.server_cpu.items() if k != "postgres")
        server_ms = servers / r.requests * 1000 if r.requests else None
        ours = servers + r.server_cpu.get("postgres", 0.0) + r.client_cpu
        others = max(0.0, r.machine_busy - ours)

        def share(seconds: float | None, r: Result = r) -> str:
            return fmt(
                seconds / r.elapsed * 100 if seconds is not None and r.elapsed else None, ".0f", "%"
            )

        print(
            f"{config:<7} {r.requests:>9} {r.rps:>7.0f} "
            f"{fmt(percentile(latencies, 50) * 1000, '.1f'):>8} "
            f"{fmt(percentile(latencies, 99) * 1000, '.1f'):>8} {r.errors:>7} "
            f"{r.rate_limited:>8} {share(r.server_cpu.get('A')):>6} "
            f"{share(r.server_cpu.get('B')):>6} {fmt(server_ms, '.1f'):>6} "
            f"{share(r.server_cpu.get('postgres')):>7} "
            f"{share(r.client_cpu):>8} {share(r.machine_busy):>8} {share(others):>7}"
        )
    one, two = results["one"], results["two"]
    if one.rps:
        print(f"two / one = {two.rps / one.rps:.2f} x the requests per second")

    print()
    header = f"{'operation':<11} {'mix':>4}" + "".join(
        f" | {c + ' n':>7} {'p50 ms':>7} {'p99 ms':>8} {'err':>4} {'rl':>3}" for c in CONFIGS
    )
    print(header)
    print("-" * len(header))
    for op, weight in mix.items():
        line = f"{op:<11} {weight / sum(mix.values()) * 100:>3.0f}%"
        for config in CONFIGS:
            stats = results[config].ops[op]
            p50 = percentile(stats.latencies, 50) * 1000
            p99 = percentile(stats.latencies, 99) * 1000
            line += (
                f" | {len(stats.latencies):>7} {fmt(p50, '.1f'):>7} {fmt(p99, '.1f'):>8} "
                f"{stats.errors:>4} {stats.rate_limited:>3}"
            )
        print(line)
    for config in CONFIGS:
        for kind, count in results[config].error_kinds.most_common(8):
            print(f"  {config}: {count} x {kind}")
    print(
        "\nreq/s: completed requests per second of the measured time; p50/p99: nearest-rank "
        "latency percentiles; errors: wrong answers (must be 0); rate-lim / rl: answers "
        "RATE_LIMITED (counted apart; RATE_LIMITS is generous, so 0 expected). srv A / srv B: "
        "each server process's CPU (100% = one core; one event loop each, Argon2id in "
        "threads); ms/req: the servers' CPU milliseconds per request (other load on the "
        "machine changes it less than req/s); pg CPU: all `postgres` processes on the "
        "machine (other databases included); cli CPU: this load generator; machine: all "
        f"processes, out of {(os.cpu_count() or 1) * 100}%; others: machine minus the "
        "columns before it (other work on the machine)."
    )


def argon2_cpu_seconds() -> float:
    """CPU seconds of one Argon2id verification with the server's own parameters (median of 3)."""
    from domain.passwords import HASHER

    stored = HASHER.hash(PASSWORD)
    times = []
    for _ in range(3):
        started = time.process_time()
        HASHER.verify(stored, PASSWORD)
        times.append(time.process_time() - started)
    return sorted(times)[1]


def print_login_cost(results: dict[str, Result], argon2_seconds: float) -> None:
    """How much of the CPU the log-ins take: they are few, but each is expensive."""
    for config in CONFIGS:
        r = results[config]
        if not r.elapsed:
            continue
        per_second = len(r.ops["logIn"].latencies) / r.elapsed
        servers = sum(v for k, v in r.server_cpu.items() if k != "postgres") / r.elapsed
        share = per_second * argon2_seconds / servers * 100 if servers else math.nan
        print(
            f"{config}: {per_second:.1f} logIn/s x {argon2_seconds:.2f} s Argon2id "
            f"= {per_second * argon2_seconds * 100:.0f}% of one core, "
            f"{fmt(share, '.0f', '%')} of the servers' CPU"
        )


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = entry.partition("=")
        if name not in OPERATIONS:
            raise ValueError(f"unknown operation {name!r}; use {', '.join(OPERATIONS)}")
        mix[name] = float(weight)
        if not 0 <= mix[name] <= 1000:
            raise ValueError(f"weight of {name} out of range")
    if not mix or sum(mix.values()) <= 0:
        raise ValueError("the mix needs a positive weight")
    return mix


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="measured time per config")
    parser.add_argument("--rounds", type=int, default=4, help="turns the measured time takes")
    parser.add_argument("--warmup", type=float, default=3.0, help="unrecorded warm-up per config")
    parser.add_argument("--users", type=int, default=50, help="simulated users (clients)")
    parser.add_argument("--models", type=int, default=3, help="models uploaded per user")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"weights (default {DEFAULT_MIX})")
    parser.add_argument("--seed", type=int, default=1, help="seed of the users' choices")
    parser.add_argument(
        "--account-limits",
        choices=("generous", "default"),
        default="generous",
        help="default: the per-account log-in limits as shipped (they count failures only)",
    )
    args = parser.parse_args(argv)
    if not (0 < args.seconds <= 600 and 0 <= args.warmup <= 60 and 1 <= args.rounds <= 100):
        parser.error("need 0 < --seconds <= 600, 0 <= --warmup <= 60, 1 <= --rounds <= 100")
    if not (1 <= args.users <= 500 and 1 <= args.models <= 20):
        parser.error("need 1 <= --users <= 500 and 1 <= --models <= 20")
    try:
        args.mix = parse_mix(args.mix)
    except ValueError as error:
        parser.error(f"--mix: {error}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    on_sigterm()
    print_machine()
    total = sum(args.mix.values())
    print(
        f"load      {args.users} users (closed loop, no think time), each with {args.models} "
        f"models; mix "
        + ", ".join(f"{op} {w / total * 100:.0f}%" for op, w in args.mix.items())
        + f"; {args.warmup:g} s warm-up + {args.seconds:g} s per config in {args.rounds} rounds"
    )
    print(f"limits    RATE_LIMITS={rate_limits(args.account_limits)}")
    argon2_seconds = argon2_cpu_seconds()
    print(
        f"argon2id  one verification costs {argon2_seconds:.3f} s of CPU here (server parameters)"
    )
    results = {config: Result(config) for config in CONFIGS}
    failed = False
    servers: list[Server] = []
    prefix = f"pv_bench_{secrets.token_hex(4)}"
    with (
        tempfile.TemporaryDirectory(prefix="pv_bench_load_") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        try:
            check_redis()
            database = create_database(stack)  # dropped after the servers stop
            stack.callback(delete_redis_keys, prefix)
            shared = {
                "DATABASE_URL": pg_url(database),
                "DATA_DIR": str(workdir / "data"),
                "STORAGE_URL": f"file://{workdir / 'objects'}",
                "MASTER_KEYS": "kbench:" + base64.b64encode(secrets.token_bytes(32)).decode(),
                "SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                "REDIS_URL": REDIS_URL,
                "RATE_LIMIT_PREFIX": prefix,
                "RATE_LIMITS": rate_limits(args.account_limits),
            }
            print("starting servers ...", flush=True)
            servers.append(start_server(stack, "A", workdir, shared))  # migrates
            servers.append(start_server(stack, "B", workdir, shared))
        except TargetSkipped as skipped:
            print(f"SKIPPED ({skipped})")
            return 0
        except TargetFailed as error:
            print(
                f"FAILED: {error.summary}"
                + (f"; log tail:\n{error.detail}" if error.detail else "")
            )
            return 1
        try:
            asyncio.run(run(servers, args, results))
        except asyncio.CancelledError:
            raise SystemExit(143) from None  # SIGTERM: unwind, stopping everything
        except TargetFailed as error:
            print(f"FAILED: {error.summary}" + (f"\n{error.detail}" if error.detail else ""))
            failed = True
        finally:
            on_sigterm()  # the closed loop has reset SIGTERM to its default
        for server in servers:
            for line in log_problems(server.log_path):
                print(f"  server {server.name}: log: {line}")
    if not failed:
        print_tables(results, args.mix)
        print_login_cost(results, argon2_seconds)
    return 1 if failed or any(r.errors for r in results.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything is stopped and removed by now
        sys.exit(130)
