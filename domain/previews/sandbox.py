"""Run the previews of an uploaded file in a throw-away, confined child process.

The same kind of child as the analysis (`domain.analysis.sandbox`): a scrubbed
environment, its own process group, the plaintext through a pipe (never a
file), RLIMIT_AS and a CPU backstop, no file writes (Landlock), killed at the
wall-clock deadline. It is spawned fresh rather than forked from the analysis'
pre-forking process: a preview is not waited for by anyone, and the 0.2 s of
an interpreter keep the analysis child untouched.

Blocking: call it from a thread, not the event loop. Every failure is a
PreviewError with a reason fit for the model's owner.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys

from domain.analysis.options import AnalysisOptions
from domain.analysis.sandbox import _ROOT, MAX_REASON, child_environment

from .errors import PreviewError
from .result import Previews

log = logging.getLogger(__name__)
# A GLB of at most 200k triangles with normals is ~15 MB; anything far larger is not ours.
MAX_FRAME_BYTES = 64 << 20


def run_previews(
    data: bytes | bytearray, fmt: str, options: AnalysisOptions, timeout_s: float, memory_bytes: int
) -> Previews:
    """Both previews of a stored file, made in a confined child; PreviewError otherwise."""
    header = {
        "format": fmt,
        "size": len(data),
        "options": options.to_dict(),
        "memory_bytes": int(memory_bytes),
        "cpu_seconds": int(2 * timeout_s) + 5,  # backstop if the parent dies
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "domain.previews.child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=_ROOT,
        env=child_environment(),
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(
            json.dumps(header).encode() + b"\n" + bytes(data), timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        _kill(process)
        raise PreviewError(f"The preview took longer than {timeout_s:g} seconds.") from None
    except BaseException:
        _kill(process)
        raise
    return _result(output, process.returncode, memory_bytes)


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _result(output: bytes, returncode: int, memory_bytes: int) -> Previews:
    limit = f"{memory_bytes / (1024 * 1024):.0f} MB"
    if output.startswith(b"PVPREV1\n") and len(output) <= MAX_FRAME_BYTES:
        try:
            return Previews.unpack(output)
        except ValueError:
            log.warning("preview child sent a malformed frame")
            raise PreviewError("The preview could not be made.") from None
    try:
        message = json.loads(output) if output else {}
    except ValueError:
        message = {}
    if not isinstance(message, dict):
        message = {}
    if "failed" in message:
        raise PreviewError(str(message["failed"])[:MAX_REASON])
    if message.get("memory"):
        raise PreviewError(f"The preview exceeded the memory limit of {limit}.")
    log.warning("preview child failed: exit %s, %s", returncode, message.get("error", "no result"))
    if returncode == -signal.SIGXCPU:
        raise PreviewError("The preview used too much processing time.")
    raise PreviewError(f"The preview stopped unexpectedly (possibly the memory limit of {limit}).")
