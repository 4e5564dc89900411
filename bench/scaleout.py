"""Scale-out, shown: two API processes and two workers behind a load balancer; one of
each is killed (SIGKILL) in the middle; no acknowledged work may be lost or done twice.

Prints figures; the exit status is 1 when work was lost or duplicated (a bug), never
for slowness. What runs, each its own process, all on loopback:

- PostgreSQL: a fresh database `pv_bench_<random>` (dropped afterwards).
- Redis: the job stream `JOB_QUEUE=pv_bench_<random>` and the rate-limit counters
  (`RATE_LIMIT_PREFIX`), deleted afterwards.
- S3: moto's server (`python -m moto.server`), one bucket, `S3_SSE=AES256`.
- API: two `server.py serve` with `JOB_BROKER_URL` set (uploads are enqueued, not
  analysed in the API process), the same MASTER_KEYS and SECRET_KEY, a shared
  PROMETHEUS_MULTIPROC_DIR and METRICS_TOKEN.
- workers: two `server.py worker`.
- the load balancer: a small asyncio TCP proxy in this process, round-robin over the
  API processes, skipping one that refuses connections.

The load: `--users` customers (signed up through the balancer) each loop, without
think time: upload a small STL cube (unique size), read their first page of models,
order a model whose analysis is DONE, read the page again. At `--kill-at` of the
run, one API process and one worker get SIGKILL. Requests that fail while a process
dies are counted (`failed`) and not retried: they were never acknowledged.

After the load, the benchmark waits (at most `--settle` s) for every acknowledged
upload to be analysed. Then: lost = acknowledged uploads not DONE + acknowledged
orders missing from the database; duplicated = models analysed more than once
(`analysis done` lines per model in the API and worker logs) + orders stored more
than once. Both must be 0.

Run: `.venv/bin/python bench/scaleout.py [--seconds 150] [--users 8]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as bench/scaleout.py

from bench.common import (
    HOST,
    TargetSkipped,
    child_env,
    create_database,
    fmt,
    free_port,
    on_sigterm,
    percentile,
    pg_url,
    print_machine,
    sign_up_variables,
    subprocess_running,
    wait_healthy,
)
from bench.load import UPLOAD, check_redis, cube_stl, delete_redis_keys

REDIS = "redis://127.0.0.1:6379/0"
PAGE = "{ models(first: 20) { edges { node { id analysisStatus } } } }"
ORDER = "mutation($i: OrderInput!) { requestOrder(input: $i) { id } }"
SIGN_UP = "mutation($input: SignUpInput!) { signUp(input: $input) { token } }"
ADDRESS = {"line1": "Benchstr. 1", "postalCode": "10115", "city": "Berlin", "country": "DE"}
LIMITS = ",".join(
    f"{rule}=1000000/hour"
    for rule in (
        "login_ip",
        "login_account",
        "signup_ip",
        "upload_user",
        "upload_ip",
        "order_request_user",
        "order_step_user",
    )
)


# --- the load balancer -----------------------------------------------------------------


class RoundRobin:
    """A TCP proxy: each new connection goes to the next backend that accepts it."""

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.next = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        upstream = None
        for _ in range(len(self.backends)):
            host, port = self.backends[self.next % len(self.backends)]
            self.next += 1
            with contextlib.suppress(OSError):
                upstream = await asyncio.open_connection(host, port)
                break
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        # Cancelled at the end of the run: finish quietly (asyncio's stream callback
        # would report a cancelled handler as an error).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


# --- the load ---------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failed: Counter[str] = field(default_factory=Counter)
    ok: Counter[str] = field(default_factory=Counter)
    uploads: list[str] = field(default_factory=list)  # acknowledged model ids
    orders: list[str] = field(default_factory=list)  # acknowledged order ids
    sizes: set[float] = field(default_factory=set)


async def _call(client: httpx.AsyncClient, op: str, tally: Tally, **request: Any) -> Any:
    started = time.perf_counter()
    try:
        response = await client.post("/graphql", **request)
        payload = response.json()
    except (httpx.HTTPError, ValueError):
        tally.failed[op] += 1
        return None
    tally.latencies.setdefault(op, []).append(time.perf_counter() - started)
    if response.status_code != 200 or payload.get("errors"):
        tally.failed[op] += 1
        return None
    tally.ok[op] += 1
    return payload["data"]


async def user_loop(base: str, number: int, deadline: float, tally: Tally) -> None:
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as client:
        email = f"scale-{number}-{secrets.token_hex(4)}@example.com"
        data = None
        for _ in range(20):  # signing up may meet the killed process: try again
            data = await _call(
                client,
                "signUp",
                tally,
                json={"query": SIGN_UP, "variables": sign_up_variables(email, f"Scale {number}")},
            )
            if data:
                break
            await asyncio.sleep(0.5)
        if not data:
            return
        headers = {"authorization": f"Bearer {data['signUp']['token']}"}
        ordered: set[str] = set()
        step = 0
        while time.monotonic() < deadline:
            step += 1
            size = 5.0 + number + step / 1000.0
            operations = {"query": UPLOAD, "variables": {"f": None, "n": f"cube {size}"}}
            files = {
                "operations": (None, json.dumps(operations), "application/json"),
                "map": (None, json.dumps({"0": ["variables.f"]}), "application/json"),
                "0": ("cube.stl", cube_stl(size), "application/octet-stream"),
            }
            uploaded = await _call(
                client,
                "uploadModel",
                tally,
                files=files,
                headers={**headers, "apollo-require-preflight": "1"},
            )
            if uploaded:
                tally.uploads.append(uploaded["uploadModel"]["id"])
            page = await _call(client, "models", tally, json={"query": PAGE}, headers=headers)
            done = [
                e["node"]["id"]
                for e in (page or {}).get("models", {}).get("edges", [])
                if e["node"]["analysisStatus"] == "DONE" and e["node"]["id"] not in ordered
            ]
            if done:
                order = {
                    "modelId": done[0],
                    "quantity": 1,
                    "material": "PLA",
                    "shippingAddress": ADDRESS,
                    "billingAddress": ADDRESS,
                }
                placed = await _call(
                    client,
                    "requestOrder",
                    tally,
                    json={"query": ORDER, "variables": {"i": order}},
                    headers=headers,
                )
                if placed:
                    ordered.add(done[0])
                    tally.orders.append(placed["requestOrder"]["id"])
            await _call(client, "models", tally, json={"query": PAGE}, headers=headers)


# --- the run -----------------------------------------------------------------------------


def _key_env() -> dict[str, str]:
    master = base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        "MASTER_KEYS": f"kbench:{master}",
        "SECRET_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


def start_s3(stack: contextlib.ExitStack, workdir: Path) -> tuple[str, str]:
    port = free_port()
    url = f"http://{HOST}:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    log = workdir / "moto.log"
    proc = stack.enter_context(subprocess_running(cmd, child_env(), log))
    wait_healthy(url, proc, "/moto-api/", log)
    import boto3

    bucket = f"pv-bench-{secrets.token_hex(4)}"
    boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=bucket)
    return url, bucket


async def pg_counts(database: str, model_ids: list[str], order_ids: list[str]) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database=database)
    try:
        done = await conn.fetchval(
            "SELECT count(*) FROM model3d WHERE id = ANY($1::uuid[]) AND analysis_status = 'DONE'",
            model_ids,
        )
        stored = await conn.fetchval(
            "SELECT count(*) FROM print_order WHERE id = ANY($1::uuid[])", order_ids
        )
        orders_per_model = await conn.fetchval(
            "SELECT count(*) FROM (SELECT model_id FROM print_order WHERE id = ANY($1::uuid[]) "
            "GROUP BY model_id HAVING count(*) > 1) AS twice",
            order_ids,
        )
        all_rows = await conn.fetchval("SELECT count(*) FROM model3d")
        return {"done": done, "orders": stored, "orders_twice": orders_per_model, "rows": all_rows}
    finally:
        await conn.close()


def analyses_per_model(logs: list[Path]) -> Counter[str]:
    counted: Counter[str] = Counter()
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if "analysis done" not in line:
                continue
            with contextlib.suppress(ValueError):
                message = json.loads(line).get("message", "")
                counted[message.split()[1].rstrip(":")] += 1
    return counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of the run")
    parser.add_argument("--settle", type=float, default=240.0)
    args = parser.parse_args(argv)
    on_sigterm()
    print_machine()
    try:
        check_redis()
    except TargetSkipped as skipped:
        print(f"Redis: SKIPPED ({skipped})")
        return 0
    tag = f"pv_bench_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="pv_bench_") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        try:
            database = create_database(stack)
        except TargetSkipped as skipped:
            print(f"PostgreSQL: SKIPPED ({skipped})")
            return 0
        stack.callback(delete_redis_keys, tag)
        s3_url, bucket = start_s3(stack, workdir)
        metrics_dir = workdir / "metrics"
        metrics_dir.mkdir()
        metrics_token = secrets.token_hex(8)
        common = child_env(
            DATA_DIR=str(workdir / "data"),
            DATABASE_URL=pg_url(database),
            STORAGE_URL=f"s3://{bucket}/objects",
            S3_ENDPOINT_URL=s3_url,
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION="us-east-1",
            JOB_BROKER_URL=REDIS,
            JOB_QUEUE=tag,
            REDIS_URL=REDIS,
            RATE_LIMIT_PREFIX=tag,
            RATE_LIMITS=LIMITS,
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
            METRICS_TOKEN=metrics_token,
            ANALYSIS_TIMEOUT_SECONDS="20",
            HOST=HOST,
            **_key_env(),
        )
        apis, logs = [], []
        for name in ("api-1", "api-2"):
            port = free_port()
            log = workdir / f"{name}.log"
            proc = stack.enter_context(
                subprocess_running(
                    [sys.executable, "server.py", "serve"], {**common, "PORT": str(port)}, log
                )
            )
            wait_healthy(f"http://{HOST}:{port}", proc, "/healthz", log)  # api-1 migrates first
            apis.append((proc, port))
            logs.append(log)
        workers = []
        for name in ("worker-1", "worker-2"):
            log = workdir / f"{name}.log"
            workers.append(
                stack.enter_context(
                    subprocess_running([sys.executable, "server.py", "worker"], common, log)
                )
            )
            logs.append(log)
        print(
            f"  running: 2 API processes, 2 workers, PostgreSQL {database}, Redis stream {tag}, "
            f"moto S3 bucket {bucket}"
        )
        tally = Tally()
        started = time.monotonic()
        killed_at = asyncio.run(drive(apis, workers, args, tally))
        elapsed = time.monotonic() - started
        print(f"  load ended after {elapsed:.0f} s; waiting for the analyses ...", flush=True)
        settle_started = time.monotonic()
        counts: dict[str, int] = {}
        while time.monotonic() - settle_started < args.settle:
            counts = asyncio.run(pg_counts(database, tally.uploads, tally.orders))
            if counts["done"] == len(tally.uploads):
                break
            time.sleep(2)
        settled = time.monotonic() - settle_started
        survivor = apis[1][1]
        scrape = httpx.get(
            f"http://{HOST}:{survivor}/metrics",
            headers={"authorization": f"Bearer {metrics_token}"},
            timeout=30,
        ).text
        analysed = analyses_per_model(logs)
        twice = sum(1 for model in tally.uploads if analysed.get(model, 0) > 1)
        print(f"  logs: {sum(analysed.values())} 'analysis done' lines for {len(analysed)} models")
        lost_uploads = len(tally.uploads) - counts.get("done", 0)
        lost_orders = len(tally.orders) - counts.get("orders", 0)
        report(tally, elapsed, killed_at, settled, counts, lost_uploads, lost_orders, twice, scrape)
    return 1 if lost_uploads or lost_orders or twice or counts.get("orders_twice") else 0


async def drive(
    apis: list[Any], workers: list[Any], args: argparse.Namespace, tally: Tally
) -> float:
    balancer = RoundRobin([(HOST, port) for _, port in apis])
    await balancer.start()
    base = f"http://{HOST}:{balancer.port}"
    deadline = time.monotonic() + args.seconds
    started = time.monotonic()
    loops = [asyncio.create_task(user_loop(base, n, deadline, tally)) for n in range(args.users)]
    await asyncio.sleep(args.seconds * args.kill_at)
    killed_at = time.monotonic() - started
    apis[0][0].send_signal(signal.SIGKILL)
    workers[0].send_signal(signal.SIGKILL)
    print(
        f"  {killed_at:.0f} s: SIGKILL to api-1 (pid {apis[0][0].pid}) and worker-1 "
        f"(pid {workers[0].pid})",
        flush=True,
    )
    await asyncio.gather(*loops)
    await balancer.close()
    return killed_at


def report(
    tally: Tally,
    elapsed: float,
    killed_at: float,
    settled: float,
    counts: dict[str, int],
    lost_uploads: int,
    lost_orders: int,
    twice: int,
    scrape: str,
) -> None:
    everything = [x for values in tally.latencies.values() for x in values]
    print(f"\n{'operation':<14} {'ok':>7} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
    print("-" * 48)
    for op in ("signUp", "uploadModel", "models", "requestOrder"):
        values = tally.latencies.get(op, [])
        print(
            f"{op:<14} {tally.ok[op]:>7} {tally.failed[op]:>7} "
            f"{fmt(percentile(values, 50) * 1000, '.1f'):>8} "
            f"{fmt(percentile(values, 99) * 1000, '.1f'):>8}"
        )
    ok = sum(tally.ok.values())
    print(
        f"{'all':<14} {ok:>7} {sum(tally.failed.values()):>7} "
        f"{fmt(percentile(everything, 50) * 1000, '.1f'):>8} "
        f"{fmt(percentile(everything, 99) * 1000, '.1f'):>8}"
    )
    print(
        f"\nthroughput: {ok / elapsed:.1f} answered requests/s over {elapsed:.0f} s "
        f"(one API process and one worker killed at {killed_at:.0f} s)"
    )
    print(
        f"acknowledged uploads {len(tally.uploads)}, analysed DONE {counts.get('done')} "
        f"(after {settled:.0f} s of settling); acknowledged orders {len(tally.orders)}, "
        f"stored {counts.get('orders')}"
    )
    print(
        f"LOST: {lost_uploads} uploads, {lost_orders} orders;  DUPLICATED: {twice} models "
        f"analysed more than once, {counts.get('orders_twice')} models ordered twice"
    )
    wanted = ("pv_graphql_requests_total", "pv_analysis_seconds_count", "pv_job_queue_depth")
    lines = [line for line in scrape.splitlines() if line.startswith(wanted)]
    print("metrics scraped from the surviving API process (all processes added up):")
    for line in lines[:12]:
        print("  " + line)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
