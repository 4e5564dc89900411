"""Helpers shared by the benchmarks in this directory (api.py, upload.py, load.py).

Subprocess servers on free loopback ports, started with a minimal environment and
always stopped; fresh PostgreSQL databases, always dropped; signing a user up over
HTTP; nearest-rank percentiles; the header every benchmark prints. Nothing here
decides pass or fail on time.

The scripts are run as `.venv/bin/python bench/NAME.py` (then `bench/` is on sys.path,
not the repository) and imported as `bench.NAME` by uvicorn for their floor apps, so
each puts the repository root on sys.path before `from bench.common import ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PASSWORD = "correct horse battery staple 42"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
# The only variables a subprocess inherits; anything else in the caller's environment
# (STORAGE_URL, MASTER_KEYS, proxies...) must not change what is measured.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")

SIGN_UP = "mutation($input: SignUpInput!) { signUp(input: $input) { token } }"


class TargetFailed(RuntimeError):
    """A target could not be measured: a one-line summary, and the detail (a log tail)."""

    def __init__(self, summary: str, detail: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail


class TargetSkipped(RuntimeError):
    """A target that is optional here (PostgreSQL) is not available."""


# --- processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def child_env(**overrides: str) -> dict[str, str]:
    env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


@contextlib.contextmanager
def subprocess_running(cmd: list[str], env: dict[str, str], log_path: Path) -> Iterator[Any]:
    """Start cmd (output to log_path); always terminate it, then kill it if it lingers."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches only us, and we stop it in order
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    | " + line for line in text.splitlines()[-lines:])


def log_problems(path: Path, limit: int = 5) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    markers = (" WARNING ", " ERROR ", "Traceback")
    return [line for line in lines if any(m in line for m in markers)][:limit]


def wait_healthy(base_url: str, proc: Any, path: str, log_path: Path) -> None:
    """Poll base_url+path until it answers 200, the process dies, or START_TIMEOUT passes."""
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise TargetFailed(
                    f"the process exited with status {proc.returncode}", log_tail(log_path)
                )
            try:
                response = client.get(base_url + path)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                last = type(error).__name__
            time.sleep(0.2)
    raise TargetFailed(
        f"{path} did not answer 200 within {START_TIMEOUT:.0f} s (last: {last})",
        log_tail(log_path),
    )


def cpu_seconds(pid: int) -> float | None:
    """User+system CPU seconds of a process, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def on_sigterm() -> None:
    """A SIGTERM unwinds like Ctrl-C: the with blocks stop servers and drop the database."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# --- the application: signing up ------------------------------------------------------


def sign_up_variables(email: str, company: str) -> dict[str, Any]:
    return {
        "input": {
            "email": email,
            "password": PASSWORD,
            "firstName": "Bench",
            "lastName": "Mark",
            "companyName": company,
            "address": {
                "line1": "Benchstraße 1",
                "postalCode": "10115",
                "city": "Berlin",
                "country": "DE",
            },
        }
    }


def sign_up(base_url: str, company: str, email: str | None = None) -> str:
    """Sign a new user up over HTTP (Argon2id: slow on purpose); returns the session token."""
    email = email or f"bench-{secrets.token_hex(6)}@example.com"
    with httpx.Client(trust_env=False, timeout=30.0) as client:
        response = client.post(
            base_url + "/graphql",
            json={"query": SIGN_UP, "variables": sign_up_variables(email, company)},
        )
    try:
        return response.json()["data"]["signUp"]["token"]
    except (ValueError, KeyError, TypeError):
        raise TargetFailed(
            f"signUp failed: HTTP {response.status_code}", "    | " + response.text[:1000]
        ) from None


# --- PostgreSQL ------------------------------------------------------------------------


async def pg_admin(statement: str) -> None:
    import asyncpg  # the server's own driver; imported here so the rest runs without it

    conn = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def pg_url(name: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def create_database(stack: contextlib.ExitStack, label: str = "postgres") -> str:
    """A fresh `pv_bench_<random>`, dropped when stack unwinds; TargetSkipped if impossible.

    Enter it into the stack before the servers that use it, so that it is dropped after
    they have stopped.
    """
    name = f"pv_bench_{secrets.token_hex(4)}"  # [0-9a-f] only: safe to quote into SQL
    try:
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # any reason PostgreSQL cannot be used means: skip it
        raise TargetSkipped(f"{type(error).__name__}: {error}".splitlines()[0]) from None
    stack.callback(drop_database, name, label)
    print(f"  {label}: created database {name}")
    return name


def drop_database(name: str, label: str = "postgres") -> None:
    # Runs after the server is stopped; FORCE (PostgreSQL 13+) ends any connection left.
    try:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        print(f"  {label}: dropped database {name}")
    except Exception as error:  # report it and go on: the figures are still valid
        print(f"  {label}: could not drop database {name}: {error}")


# --- figures ---------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (nan when there are no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The median (the mean of the middle two for an even count; nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    return format(value, spec) + suffix


def print_machine() -> None:
    """date, machine (cores, load), python and the tree: the lines every benchmark starts with."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    system = f"{platform.machine()}, {platform.system()} {platform.release()}"
    load = "/".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"date      {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine   nproc={cores} ({system}), load average {load} at start")
    print(f"python    {platform.python_implementation()} {platform.python_version()}")
    tree = git_tree()
    if tree:
        print(f"tree      {tree}")


def git_tree() -> str:
    """`<short commit>` plus `+ uncommitted changes` when the work tree differs ('' if no git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + (" + uncommitted changes" if dirty else "")
