"""Run `analyse` in a throw-away child process with time and memory limits.

Parsers of hostile files can loop, allocate without bound or crash in
native code. A child process (`domain.analysis.child`) contains all of
that: it gets RLIMIT_AS, a CPU-time backstop, no core dumps and no file
writes (Landlock, see `confine`), and is killed when the wall-clock timeout
expires.

The child is forked from a pre-started process (`child --prefork`) that has
numpy and the analysis imported but no secret, no database connection and
no listening socket (it was started with a scrubbed environment): a child is
ready in about a millisecond instead of the 0.1-0.3 s of a fresh interpreter.
Should that process be unavailable, a fresh interpreter is spawned instead.

The plaintext goes to the child through a pipe, never a file; the report
comes back as JSON through another pipe. Blocking: call it from a background
job, not from the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, replace
from pathlib import Path

from .cpu_tuning import numpy_environment
from .errors import AnalysisFailed
from .options import AnalysisOptions
from .report import FirstReport, MeshReport

log = logging.getLogger(__name__)
# The directory holding the `domain` package, so `-m` finds it installed or not.
_ROOT = Path(__file__).resolve().parents[2]
# A result is a small JSON document; anything larger is not ours.
MAX_RESULT_BYTES = 1 << 20
MAX_REASON = 300
# Children forked from the pre-started process (False: a fresh interpreter each).
PREFORK = True
_ENV = {
    "PATH": os.defpath,
    "LC_ALL": "C.UTF-8",
    # One thread per native library: predictable memory under RLIMIT_AS.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    # Nothing may be written to disk (the child is also confined by Landlock).
    "PYTHONDONTWRITEBYTECODE": "1",
    # numpy's fast sort path on this processor (cpu_tuning explains).
    **numpy_environment(),
}


@dataclass(frozen=True)
class ChildStats:
    seconds: float  # wall clock, request to exit
    peak_rss_bytes: int  # the child's maximum resident set size


def run_isolated(
    data: bytes,
    file_name: str,
    fmt: str,
    options: AnalysisOptions,
    timeout_s: float,
    memory_bytes: int,
    on_first: FirstReport | None = None,
) -> MeshReport:
    """`analyse` in a child process; every failure becomes AnalysisFailed.

    `on_first` (called from this thread) gets the report without the wall check
    as soon as the child has it (see `core.analyse`); the timeout covers both."""
    report, _ = run_isolated_with_stats(
        data, file_name, fmt, options, timeout_s, memory_bytes, on_first
    )
    return report


def run_isolated_with_stats(
    data: bytes,
    file_name: str,
    fmt: str,
    options: AnalysisOptions,
    timeout_s: float,
    memory_bytes: int,
    on_first: FirstReport | None = None,
) -> tuple[MeshReport, ChildStats]:
    """Same as `run_isolated`, also returning the child's time and peak memory."""
    header = {
        "staged": on_first is not None,
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
    child = _start()
    named = None if on_first is None else _renamed(on_first, file_name)
    try:
        output = _exchange(child, json.dumps(header).encode() + b"\n", data, deadline, named)
        returncode = child.wait(deadline)
    except TimeoutError:
        child.kill()
        raise AnalysisFailed(f"The analysis exceeded {timeout_s:g} seconds.") from None
    except BaseException:
        child.kill()
        raise
    finally:
        child.close()
    seconds = time.monotonic() - started
    message = _decode(output)
    peak = int(message.get("peak_rss_bytes") or 0)
    report = replace(_result(message, returncode, memory_bytes), file_name=file_name)
    return report, ChildStats(seconds, peak)


def _renamed(on_first: FirstReport, file_name: str) -> FirstReport:
    return lambda report: on_first(replace(report, file_name=file_name))


def child_command() -> list[str]:
    return [sys.executable, "-m", "domain.analysis.child"]


def child_environment() -> dict[str, str]:
    return dict(_ENV)


def prestart() -> None:
    """Start the pre-forking process now rather than on the first upload."""
    if PREFORK:
        _prefork.ensure()


# --- the child, spawned or forked --------------------------------------------------------


class _Child:
    """A running analysis child: its input and output pipes, its exit status."""

    pid: int
    stdin: int
    stdout: int

    def wait(self, deadline: float) -> int:
        raise NotImplementedError

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # its own group: helpers die with it

    def close(self) -> None:
        # `stdin` belongs to the feeder thread, which closes it when done.
        with contextlib.suppress(OSError):
            os.close(self.stdout)


class _Spawned(_Child):
    def __init__(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - fixed: this interpreter, our module
            child_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=_ROOT,
            env=_ENV,
            start_new_session=True,
        )
        self.pid = self._process.pid
        self.stdin = os.dup(self._process.stdin.fileno())
        self.stdout = os.dup(self._process.stdout.fileno())
        self._process.stdin.close()
        self._process.stdout.close()

    def wait(self, deadline: float) -> int:
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self._process.returncode = os.waitstatus_to_exitcode(status)
                return self._process.returncode
            if time.monotonic() >= deadline:
                raise TimeoutError
            time.sleep(0.002)

    def kill(self) -> None:
        super().kill()
        self._process.wait()


class _Forked(_Child):
    def __init__(self, pid: int, stdin: int, stdout: int, status: int) -> None:
        self.pid, self.stdin, self.stdout, self._status = pid, stdin, stdout, status

    def wait(self, deadline: float) -> int:
        payload = _read_exactly(self._status, 8, deadline)
        if payload is None:
            return -signal.SIGKILL  # the pre-forking process died with it
        return struct.unpack("<q", payload)[0]

    def kill(self) -> None:
        super().kill()
        # The pre-forking process reaps it and reports; wait briefly for that.
        _read_exactly(self._status, 8, time.monotonic() + 5)

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            os.close(self._status)


class _Prefork:
    """The long-lived process that forks analysis children (one per Python process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._owner = 0

    def ensure(self) -> None:
        with self._lock:
            self._ensure()

    def _ensure(self) -> None:
        alive = self._process is not None and self._process.poll() is None
        if alive and self._owner == os.getpid():
            return
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._process = subprocess.Popen(  # noqa: S603 - fixed: this interpreter, our module
            [*child_command(), "--prefork"],
            stdin=theirs.fileno(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=_ROOT,
            env=_ENV,
            start_new_session=True,  # a Ctrl-C meant for the server is not for it
        )
        theirs.close()
        self._control, self._owner = ours, os.getpid()

    def fork(self) -> _Forked:
        data_r, data_w = os.pipe()
        result_r, result_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            with self._lock:
                self._ensure()
                socket.send_fds(self._control, [b"f"], [data_r, result_w, status_w])
            pid = _read_exactly(status_r, 8, time.monotonic() + 30)
        except BaseException:
            for fd in (data_w, result_r, status_r):
                os.close(fd)
            raise
        finally:
            for fd in (data_r, result_w, status_w):
                os.close(fd)
        if pid is None:
            for fd in (data_w, result_r, status_r):
                os.close(fd)
            raise OSError("the pre-forking analysis process did not answer")
        return _Forked(struct.unpack("<q", pid)[0], data_w, result_r, status_r)

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()  # it exits when its control socket closes
        if self._process is not None and self._owner == os.getpid():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(1)
        self._process = self._control = None


_prefork = _Prefork()


def _start() -> _Child:
    if PREFORK:
        try:
            return _prefork.fork()
        except OSError as error:
            log.warning("pre-forked analysis unavailable (%s); spawning a child", error)
            with _prefork._lock:
                _prefork._stop()
    return _Spawned()


def _read_exactly(fd: int, count: int, deadline: float) -> bytes | None:
    """`count` bytes from `fd`, None at end of file; TimeoutError after `deadline`."""
    received = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while len(received) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, count - len(received))
            if not chunk:
                return None
            received += chunk
    return received


# --- talking to the child ----------------------------------------------------------------


def _exchange(
    child: _Child, header: bytes, data: bytes, deadline: float, on_first: FirstReport | None = None
) -> bytes:
    """Feed the child (from a thread, so a child that stops reading cannot
    block us) while collecting its output until it closes stdout."""
    feeder = threading.Thread(target=_feed, args=(child.stdin, header, data), daemon=True)
    feeder.start()
    output = _collect_output(child.stdout, deadline, on_first)
    feeder.join(max(0.0, deadline - time.monotonic()))
    return output


def _quiet_pipe() -> None:
    """Writes of this thread to a dead child's pipe raise EPIPE, whatever SIGPIPE's
    disposition: a library (gmsh) may have reset it to "terminate" in this process.
    Blocked here, the signal stays pending on this thread and dies with it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})


def _feed(fd: int, header: bytes, data: bytes) -> None:
    """Write the job to the child; the feeder owns (and closes) `fd`."""
    _quiet_pipe()
    try:
        with open(fd, "wb") as stdin:
            stdin.write(header)
            stdin.write(memoryview(data))
    except (BrokenPipeError, ValueError, OSError):
        pass  # the child died or stopped reading: its exit status tells why


def _decode(output: bytes) -> dict:
    """The child's last message (its result; a first report may precede it)."""
    lines = output.strip().rsplit(b"\n", 1)
    try:
        message = json.loads(lines[-1]) if lines[-1] else {}
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _first_report(line: bytes) -> MeshReport | None:
    """A staged child's first report, from its first line; None if it is not one."""
    message = _decode(line)
    if not isinstance(message.get("first"), dict):
        return None
    try:
        return MeshReport.from_dict(message["first"])
    except (KeyError, TypeError, ValueError):
        return None


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


# --- analysing an upload while it streams in -------------------------------------------

# Uploads analysed while they arrive, at once: each holds a forked child and,
# by the end, the plaintext in that child's memory. Others wait for the job.
MAX_STREAMS = max(2, 2 * (os.cpu_count() or 1))
# Plaintext queued for the child but not yet written: if the child falls this
# far behind, the upload stops feeding it and the job analyses the stored file.
MAX_BACKLOG_BYTES = 64 << 20
_PIPE_BYTES = 1 << 20  # fewer wake-ups per megabyte than the default 64 KiB
_streams = threading.BoundedSemaphore(MAX_STREAMS)


class StreamAbandoned(Exception):
    """The streamed analysis gave no result (aborted, fell behind, child lost):
    not a verdict on the file; the job analyses the stored file instead."""


class StreamedAnalysis:
    """One analysis child fed the plaintext of an upload chunk by chunk.

    The child is the same as `run_isolated`'s, with the same limits, set
    before it reads a byte; it only learns the size when the stream ends
    (`finish`). Nothing here blocks the caller (the event loop): one worker
    thread forks the child, writes the queued chunks into its pipe and reads
    its answer. The outcome is `future`: a MeshReport (its file name is the
    job's to fill in), AnalysisFailed for the file's own failures, or
    StreamAbandoned when this path gave no answer. The child is staged: `first`
    gets the report without the wall check before `future` is settled (never,
    when the file has no walls to check or fails before).
    """

    def __init__(self, header: bytes, timeout_s: float, memory_bytes: int) -> None:
        self.future: Future[MeshReport] = Future()
        # The report without the wall check, if the child sends one before `future`.
        self.first: Future[MeshReport] = Future()
        self._timeout_s, self._memory_bytes = timeout_s, memory_bytes
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._queue.put(header)
        self._lock = threading.Lock()
        self._backlog = 0
        self._size = 0
        self._closed = False  # finished or aborted: no more feeding
        self._finished_at: float | None = None
        self._killed = False  # kill the child as soon as it exists
        self._timed_out = False
        self._child: _Child | None = None
        self._timer: threading.Timer | None = None
        self._worker = threading.Thread(target=self._run, daemon=True)
        self._worker.start()

    @classmethod
    def start(
        cls, fmt: str, options: AnalysisOptions, timeout_s: float, memory_bytes: int,
        size_hint: int = 0,
    ) -> StreamedAnalysis | None:
        """A streamed analysis, or None when too many run already."""
        if not PREFORK or not _streams.acquire(blocking=False):
            return None
        header = {
            "staged": True,
            "file_name": "upload",
            "format": fmt,
            "size": None,  # streamed: the child reads until the end of its input
            "size_hint": max(0, int(size_hint)),
            "options": options.to_dict(),
            "memory_bytes": int(memory_bytes),
            "cpu_seconds": int(2 * timeout_s) + 5,
        }
        return cls(json.dumps(header).encode() + b"\n", timeout_s, memory_bytes)

    def feed(self, chunk: bytes) -> None:
        """Queue a chunk for the child; never blocks."""
        if self._closed or self.future.done() or not chunk:
            return
        with self._lock:
            self._backlog += len(chunk)
            behind = self._backlog > MAX_BACKLOG_BYTES
        if behind:
            self.abort("the analysis child fell behind the upload")
            return
        self._size += len(chunk)
        self._queue.put(chunk)

    def finish(self, size: int) -> None:
        """The upload is complete (and `size` long): let the child analyse it."""
        if self._closed:
            return
        if size != self._size:
            self.abort(f"fed {self._size} bytes of {size}")
            return
        self._closed = True
        self._finished_at = time.monotonic()
        # The wall-clock limit runs from here, even if the pipe is still full.
        self._timer = threading.Timer(self._timeout_s, self._expire)
        self._timer.daemon = True
        self._timer.start()
        self._queue.put(None)

    def abort(self, why: str = "the upload failed") -> None:
        """Kill the child: the upload failed or was not claimed, or this path gave up."""
        self._settle(exception=StreamAbandoned(why))
        self._closed = True
        self._kill()
        self._queue.put(None)  # the worker stops feeding (a second None is never read)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the child is gone and its pipes are closed (tests)."""
        self._worker.join(timeout)

    def _kill(self) -> None:
        with self._lock:
            self._killed = True
            child = self._child
        if child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)

    def _expire(self) -> None:
        if not self.future.done():
            self._timed_out = True
            self._kill()

    def _run(self) -> None:
        """The worker thread: fork the child, feed it, collect its answer."""
        _quiet_pipe()
        try:
            child = _prefork.fork()
        except OSError as error:
            self._settle(exception=StreamAbandoned(f"no analysis child: {error}"))
            return
        with self._lock:
            self._child = child
            killed = self._killed
        if killed:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        try:
            self._feed_child(child)
            if self._finished_at is not None and not self._killed:
                self._collect(child, self._finished_at + self._timeout_s)
            else:  # aborted (already settled) or out of time before it was fed
                child.kill()
                self._settle(exception=self._kill_reason())
        except BaseException as error:  # handed to the job, never raised in this thread
            child.kill()
            self._settle(exception=StreamAbandoned(f"{type(error).__name__}: {error}"))
        finally:
            child.close()
            if self._timer is not None:
                self._timer.cancel()

    def _feed_child(self, child: _Child) -> None:
        """Write the queued chunks until the end mark; owns (and closes) the input pipe."""
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(child.stdin, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        broken = False
        try:
            while (chunk := self._queue.get()) is not None:
                if not broken:
                    try:
                        _write_all(child.stdin, chunk)
                    except OSError:
                        broken = True  # the child died: its exit status says why
                with self._lock:
                    self._backlog -= len(chunk)
        finally:
            with contextlib.suppress(OSError):
                os.close(child.stdin)

    def _collect(self, child: _Child, deadline: float) -> None:
        """After `finish`: the child's answer, within the timeout."""
        try:
            output = _collect_output(child.stdout, deadline, self._first_arrived)
            returncode = child.wait(deadline)
            if self._timed_out:
                raise TimeoutError
            report = _result(_decode(output), returncode, self._memory_bytes)
        except TimeoutError:
            child.kill()
            self._timed_out = True
            self._settle(exception=self._kill_reason())
        except AnalysisFailed as failed:
            self._settle(exception=failed)
        else:
            self._settle(result=report)

    def _first_arrived(self, report: MeshReport) -> None:
        with contextlib.suppress(InvalidStateError):
            self.first.set_result(report)

    def _kill_reason(self) -> BaseException:
        if self._timed_out:
            return AnalysisFailed(f"The analysis exceeded {self._timeout_s:g} seconds.")
        return StreamAbandoned("aborted")

    def _settle(self, result: MeshReport | None = None, exception: BaseException | None = None):
        with self._lock:
            if self.future.done():
                return
            if exception is not None:
                self.future.set_exception(exception)
            else:
                self.future.set_result(result)
        _streams.release()


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view):]


def _collect_output(fd: int, deadline: float, on_first: FirstReport | None = None) -> bytes:
    """The child's result pipe until it closes; TimeoutError after `deadline`.
    With `on_first`, a first report line is handed over as soon as it is complete."""
    received: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(received)
            if size < MAX_RESULT_BYTES:
                received.append(chunk)
                size += len(chunk)
            if on_first is not None and b"\n" in chunk:
                line = b"".join(received).split(b"\n", 1)[0]
                first = _first_report(line)
                if first is not None:
                    on_first(first)
                on_first = None  # only the first line can be one
