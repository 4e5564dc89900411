"""Run `analyse` in a throw-away child process with time and memory limits.

Parsers of hostile files can loop, allocate without bound or crash in
native code. A child process (`python -m domain.analysis.worker`) contains
all of that: it gets RLIMIT_AS, a CPU-time backstop, no core dumps and no
file writes (Landlock, see `confine`), and is killed when the wall-clock
timeout expires.

The plaintext goes to the child through a pipe (stdin), never a file; the
report comes back as JSON through another pipe. The child's environment is
scrubbed so it does not inherit the server's secrets. Blocking: call it from
a background job, not from the event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import AnalysisFailed
from .options import AnalysisOptions
from .report import MeshReport

log = logging.getLogger(__name__)
# The directory holding the `domain` package, so `-m` finds it installed or not.
_ROOT = Path(__file__).resolve().parents[2]
# A result is a small JSON document; anything larger is not ours.
MAX_RESULT_BYTES = 1 << 20
MAX_REASON = 300
_ENV = {
    "PATH": os.defpath,
    "LC_ALL": "C.UTF-8",
    # One thread per native library: predictable memory under RLIMIT_AS.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    # Nothing may be written to disk (the child is also confined by Landlock).
    "PYTHONDONTWRITEBYTECODE": "1",
}


@dataclass(frozen=True)
class ChildStats:
    seconds: float  # wall clock, spawn to exit
    peak_rss_bytes: int  # the child's maximum resident set size


def run_isolated(
    data: bytes,
    file_name: str,
    fmt: str,
    options: AnalysisOptions,
    timeout_s: float,
    memory_bytes: int,
) -> MeshReport:
    """`analyse` in a child process; every failure becomes AnalysisFailed."""
    report, _ = run_isolated_with_stats(data, file_name, fmt, options, timeout_s, memory_bytes)
    return report


def run_isolated_with_stats(
    data: bytes,
    file_name: str,
    fmt: str,
    options: AnalysisOptions,
    timeout_s: float,
    memory_bytes: int,
) -> tuple[MeshReport, ChildStats]:
    """Same as `run_isolated`, also returning the child's time and peak memory."""
    header = {
        # The name is put back below: the child has no use for it.
        "file_name": "upload",
        "format": fmt,
        "size": len(data),
        "options": options.to_dict(),
        "memory_bytes": int(memory_bytes),
        "cpu_seconds": int(2 * timeout_s) + 5,  # backstop if the parent dies
    }
    started = time.monotonic()
    deadline = started + timeout_s
    child = subprocess.Popen(  # noqa: S603 - a fixed command: this interpreter, our module
        child_command(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=_ROOT,
        env=_ENV,
        start_new_session=True,  # its own process group, killed as a whole
    )
    try:
        output = _exchange(child, json.dumps(header).encode() + b"\n", data, deadline)
        usage = _reap(child, deadline)
    except TimeoutError:
        _kill(child)
        raise AnalysisFailed(f"The analysis exceeded {timeout_s:g} seconds.") from None
    except BaseException:
        _kill(child)
        raise
    finally:
        child.stdout.close()
    seconds = time.monotonic() - started
    message = _decode(output)
    # The child's own figure: ru_maxrss counts the parent's memory at fork.
    peak = int(message.get("peak_rss_bytes") or usage.ru_maxrss * 1024)
    report = replace(_result(message, child.returncode, memory_bytes), file_name=file_name)
    return report, ChildStats(seconds, peak)


def child_command() -> list[str]:
    return [sys.executable, "-m", "domain.analysis.worker"]


def child_environment() -> dict[str, str]:
    return dict(_ENV)


def _exchange(child: subprocess.Popen, header: bytes, data: bytes, deadline: float) -> bytes:
    """Feed the child (from a thread, so a child that stops reading cannot
    block us) while collecting its output until it closes stdout."""
    feeder = threading.Thread(target=_feed, args=(child.stdin, header, data), daemon=True)
    feeder.start()
    received: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if not selector.select(remaining):
                continue
            chunk = os.read(child.stdout.fileno(), 1 << 16)
            if not chunk:
                break
            if size < MAX_RESULT_BYTES:  # a result is small; ignore anything beyond
                received.append(chunk)
                size += len(chunk)
    feeder.join(max(0.0, deadline - time.monotonic()))
    return b"".join(received)


def _feed(stdin, header: bytes, data: bytes) -> None:
    try:
        stdin.write(header)
        stdin.write(memoryview(data))
        stdin.close()
    except (BrokenPipeError, ValueError, OSError):
        pass  # the child died or stopped reading: its exit status tells why


def _reap(child: subprocess.Popen, deadline: float):
    """Wait (until the deadline) for the child to exit; return its resource usage."""
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return usage
        if time.monotonic() >= deadline:
            raise TimeoutError
        time.sleep(0.002)


def _kill(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    if child.stdin:
        with contextlib.suppress(OSError):
            child.stdin.close()


def _decode(output: bytes) -> dict:
    try:
        message = json.loads(output) if output else {}
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _result(message: dict, returncode: int, memory_bytes: int) -> MeshReport:
    limit = f"{memory_bytes / (1024 * 1024):.0f} MB"
    if "report" in message:
        try:
            return MeshReport.from_dict(message["report"])
        except (KeyError, TypeError, ValueError):
            message = {"error": "malformed report"}
    if "failed" in message:
        # The child parsed a hostile file: bound what it can make us say.
        raise AnalysisFailed(str(message["failed"])[:MAX_REASON])
    if message.get("memory"):
        raise AnalysisFailed(f"The analysis exceeded the memory limit of {limit}.")
    log.warning("analysis child failed: exit %s, %s", returncode, message.get("error", "no result"))
    if returncode == -signal.SIGXCPU:
        raise AnalysisFailed("The analysis used too much processing time.")
    raise AnalysisFailed(
        f"The analysis stopped unexpectedly (possibly the memory limit of {limit})."
    )
