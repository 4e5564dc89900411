"""A page's latency as the models table grows: 1,000 -> 100,000 -> 1,000,000 rows (PostgreSQL).

Prints figures only. One `server.py serve` on a fresh PostgreSQL database
`pv_bench_<random>` (dropped afterwards). Over the API: one customer (company A)
signs up, one staff member is created with `server.py create-staff` and logs in with
a TOTP code. The rows are seeded with bulk SQL (`INSERT ... SELECT ... FROM
generate_series`, not the ORM): company A owns 1,000 models; a second company owns the
rest; every `created_at` is random over one year, so A's models are interleaved with
the others' and the newest page is not simply the table's end.

At each size, after `ANALYZE`: the customer's first page and staff's first page,
`models(first: 20) { edges { node { id name analysisStatus } } pageInfo { hasNextPage
endCursor } }`, and the customer's 10th page (walked by cursor), each asked
`--requests` times in a row on one keep-alive connection (after 10 unrecorded);
p50 and p99 in ms. At 1,000,000 the same is measured once more without the page
indexes of migration 0004 (dropped, measured, created again), which is what the
table looked like before issue 14.

Run: `.venv/bin/python bench/page_scale.py [--requests 200] [--sizes 1000,100000,1000000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyotp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as bench/page_scale.py

from bench.common import (
    HOST,
    PASSWORD,
    PG_HOST,
    PG_PORT,
    PG_USER,
    TargetFailed,
    TargetSkipped,
    child_env,
    create_database,
    fmt,
    free_port,
    on_sigterm,
    percentile,
    pg_url,
    print_machine,
    sign_up,
    subprocess_running,
    wait_healthy,
)

PAGE = (
    "query($after: String) { models(first: 20, after: $after) { edges { node { id name "
    "analysisStatus } } pageInfo { hasNextPage endCursor } } }"
)
LOG_IN = (
    "mutation($e: String!, $p: String!, $o: String) "
    "{ logIn(email: $e, password: $p, otp: $o) { token } }"
)
OWN_MODELS = 1000
# The indexes of storage/migrations/0005_page_indexes.py on model3d, as PostgreSQL names
# them is not known here: they are found by their columns.
PAGE_INDEX_COLUMNS = ("company_id, created_at, id", "created_at, id")

SEED = """
INSERT INTO model3d (id, company_id, owner_id, name, file_name, file_size, format,
    object_key, wrapped_key, created_at, upload_ip, analysis_status, analysis_attempts)
SELECT gen_random_uuid(), $1::uuid, NULL, 'seeded ' || n, 'seeded.stl', 684, 'stl',
    'bench/' || $2::text || '/' || n, 'none',
    now() - random() * interval '365 days', NULL, 'DONE', 1
FROM generate_series(1, $3::int) AS n
"""


async def _pg(database: str, *statements: tuple[str, tuple[Any, ...]]) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database)
    try:
        return [await conn.fetch(sql, *args) for sql, args in statements]
    finally:
        await conn.close()


def pg(database: str, sql: str, *args: Any) -> list[Any]:
    return asyncio.run(_pg(database, (sql, args)))[0]


def seed(database: str, company_id: str, rows: int) -> float:
    started = time.perf_counter()
    pg(database, SEED, company_id, secrets.token_hex(4), rows)
    pg(database, "ANALYZE model3d")
    return time.perf_counter() - started


def company_of(base: str, token: str) -> str:
    answer = post(base, "{ me { company { id } } }", {}, token)
    return answer["data"]["me"]["company"]["id"]


def post(base: str, query: str, variables: dict[str, Any], token: str | None) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        base + "/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        trust_env=False,
        timeout=30,
    )
    return response.json()


def make_staff(env: dict[str, str], base: str) -> str:
    email = f"staff-{secrets.token_hex(4)}@example.com"
    done = subprocess.run(
        [sys.executable, "server.py", "create-staff", email],
        input=PASSWORD + "\n",
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    uri = next(line for line in done.stdout.splitlines() if line.startswith("otpauth://"))
    code = pyotp.parse_uri(uri).now()
    answer = post(base, LOG_IN, {"e": email, "p": PASSWORD, "o": code}, None)
    return answer["data"]["logIn"]["token"]


def measure(base: str, token: str, requests: int, pages: int = 1) -> tuple[float, float]:
    """p50, p99 in ms of reaching page `pages` (only the last request is timed)."""
    latencies: list[float] = []
    with httpx.Client(trust_env=False, timeout=30, base_url=base) as client:
        headers = {"authorization": f"Bearer {token}"}
        after = None
        for _ in range(pages - 1):
            data = client.post(
                "/graphql", json={"query": PAGE, "variables": {"after": after}}, headers=headers
            ).json()
            after = data["data"]["models"]["pageInfo"]["endCursor"]
        body = {"query": PAGE, "variables": {"after": after}}
        for number in range(requests + 10):
            started = time.perf_counter()
            answer = client.post("/graphql", json=body, headers=headers).json()
            elapsed = time.perf_counter() - started
            edges = answer.get("data", {}).get("models", {}).get("edges")
            if answer.get("errors") or len(edges or []) != 20:
                raise TargetFailed(f"wrong page: {str(answer)[:300]}")
            if number >= 10:
                latencies.append(elapsed)
    return percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000


def page_indexes(database: str) -> list[tuple[str, str]]:
    rows = pg(database, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'model3d'")
    return [
        (r["indexname"], r["indexdef"])
        for r in rows
        if any(f"({columns})" in r["indexdef"] for columns in PAGE_INDEX_COLUMNS)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sizes", default="1000,100000,1000000")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    on_sigterm()
    print_machine()
    rows_out: list[tuple[str, float, float, float, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="pv_bench_") as tmp, contextlib.ExitStack() as stack:
        try:
            database = create_database(stack)
        except TargetSkipped as skipped:
            print(f"PostgreSQL: SKIPPED ({skipped})")
            return 0
        port = free_port()
        base = f"http://{HOST}:{port}"
        env = child_env(DATA_DIR=tmp, DATABASE_URL=pg_url(database), HOST=HOST, PORT=str(port))
        log = Path(tmp) / "server.log"
        proc = stack.enter_context(subprocess_running([sys.executable, "server.py"], env, log))
        wait_healthy(base, proc, "/healthz", log)
        customer = sign_up(base, "Page Owner GmbH")
        other = sign_up(base, "Everyone Else GmbH")
        staff = make_staff(env, base)
        own, others = company_of(base, customer), company_of(base, other)
        seconds = seed(database, own, OWN_MODELS)
        print(f"  seeded {OWN_MODELS} models of the customer in {seconds:.1f} s")
        total = OWN_MODELS
        for size in sizes:
            if size > total:
                seconds = seed(database, others, size - total)
                print(f"  seeded {size - total} more models (another company) in {seconds:.1f} s")
                total = size
            rows_out.append(
                (
                    f"{total:,}",
                    *measure(base, customer, args.requests),
                    *measure(base, staff, args.requests),
                    *measure(base, customer, args.requests, pages=10),
                )
            )
            print(f"  {total:,} rows measured", flush=True)
        indexes = page_indexes(database)
        for name, _ in indexes:
            pg(database, f'DROP INDEX "{name}"')
        pg(database, "ANALYZE model3d")
        rows_out.append(
            (
                f"{total:,} no index",
                *measure(base, customer, args.requests // 4),
                *measure(base, staff, args.requests // 4),
                *measure(base, customer, args.requests // 4, pages=10),
            )
        )
        for _, definition in indexes:
            pg(database, definition)
    header = (
        f"{'models':<18} {'customer p50':>13} {'p99':>8} {'staff p50':>10} {'p99':>8} "
        f"{'cust. page 10 p50':>18} {'p99':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for label, *figures in rows_out:
        c50, c99, s50, s99, p50, p99 = figures
        print(
            f"{label:<18} {fmt(c50, '.2f'):>13} {fmt(c99, '.2f'):>8} {fmt(s50, '.2f'):>10} "
            f"{fmt(s99, '.2f'):>8} {fmt(p50, '.2f'):>18} {fmt(p99, '.2f'):>8}"
        )
    first, last = rows_out[0], rows_out[len(sizes) - 1]
    print(
        f"\n{last[0]} vs {first[0]} (p50): customer {last[1] / first[1]:.2f}x, "
        f"staff {last[3] / first[3]:.2f}x, customer's 10th page {last[5] / first[5]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
