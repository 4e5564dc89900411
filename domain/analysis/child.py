"""The analysis child, the other side of `sandbox.run_isolated`.

`python -m domain.analysis.child` analyses one file: it reads one JSON header
line and the file's bytes from stdin and writes its JSON result line to the
stdout it was given (a staged request gets a first report line before it).
`python -m domain.analysis.child --prefork` stays up and forks
one such child per request (see `serve`), which saves the interpreter and
numpy start-up on every upload. Native libraries print to stdout
(OpenCASCADE does), so fd 1 is pointed at /dev/null and the result goes to a
private duplicate of the original pipe.

Only the standard library is imported up front: the input is read by a
thread while numpy and the analysis modules load (about 60 ms each for a
65 MB upload, so they overlap instead of adding up).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import threading

from .confine import forbid_writes

MAX_HEADER = 1 << 16


def main() -> int:
    """One analysis: header and file on stdin, the result on stdout."""
    _analyse_one(sys.stdin.buffer, os.dup(1))
    return 0


def _analyse_one(source, result_fd: int) -> None:
    """Read one job from `source`, confine this process, analyse, answer on `result_fd`."""
    result = os.fdopen(result_fd, "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    header = json.loads(source.readline(MAX_HEADER))
    _limit(header["memory_bytes"], header["cpu_seconds"])
    size = header["size"]
    reader = _Reader(source, None if size is None else int(size), int(header.get("size_hint") or 0))
    reader.start()

    def send(message: dict) -> None:
        # One JSON document per line: a staged analysis sends its first report early.
        result.write(json.dumps(message).encode() + b"\n")
        result.flush()

    message = _analyse(reader, header, send)
    message["peak_rss_bytes"] = _peak_rss()
    send(message)


# --- pre-forked: one long-lived parent of analysis children -------------------------


def serve(control: socket.socket) -> int:
    """Fork one confined child per request arriving on `control`.

    This process was started with a scrubbed environment and holds no secret,
    no database connection and no listening socket; it has numpy and the
    analysis modules imported, so a child starts in about a millisecond
    instead of the 0.1-0.3 s an interpreter and numpy take. A request is one
    byte with three descriptors: the child's input pipe, its result pipe and a
    status pipe on which this process writes the child's pid, then its exit
    status.
    """
    _preload()
    wakeup_r, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    status_pipes: dict[int, int] = {}
    with selectors.DefaultSelector() as selector:
        selector.register(control, selectors.EVENT_READ, "request")
        selector.register(wakeup_r, selectors.EVENT_READ, "exit")
        while True:
            for key, _ in selector.select():
                if key.data == "exit":
                    os.read(wakeup_r, 4096)
                    _reap(status_pipes)
                    continue
                fds = _receive(control)
                if fds is None:
                    return 0  # the parent went away
                _fork(control, fds, status_pipes, (wakeup_r, wakeup_w))


def _preload() -> None:
    # What most analyses need; format-specific libraries load in the child.
    import manifold3d  # noqa: F401  (union, thin-wall rays: 0.5 s to import)
    import numpy  # noqa: F401
    import scipy.sparse.csgraph  # (closing cracks)
    import scipy.spatial  # noqa: F401

    from . import core  # noqa: F401
    from .loaders import stl  # noqa: F401


def _receive(control: socket.socket) -> list[int] | None:
    try:
        message, fds, _, _ = socket.recv_fds(control, 1, 3)
    except OSError:
        return None
    if not message:
        return None
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return []
    return fds


def _fork(
    control: socket.socket,
    fds: list[int],
    status_pipes: dict[int, int],
    wakeup: tuple[int, int],
) -> None:
    if not fds:
        return
    data_fd, result_fd, status_fd = fds
    pid = os.fork()
    if pid == 0:  # the analysis child
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            control.close()
            for fd in (status_fd, *wakeup, *status_pipes.values()):
                os.close(fd)
            os.setpgid(0, 0)  # its own process group: killed as a whole
            _analyse_one(os.fdopen(data_fd, "rb"), result_fd)
        finally:
            os._exit(0)
    # Also here, so the group exists before the parent hears of the pid.
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    os.close(data_fd)
    os.close(result_fd)
    status_pipes[pid] = status_fd
    _write(status_fd, struct.pack("<q", pid))


def _reap(status_pipes: dict[int, int]) -> None:
    while status_pipes:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = status_pipes.pop(pid, None)
        if fd is not None:
            _write(fd, struct.pack("<q", os.waitstatus_to_exitcode(status)))
            os.close(fd)


def _write(fd: int, payload: bytes) -> None:
    with contextlib.suppress(OSError):  # the parent gave up on this child
        os.write(fd, payload)


def _analyse(reader: _Reader, header: dict, send) -> dict:
    # Imported here, while the reader thread fills the buffer.
    from .core import analyse
    from .errors import AnalysisFailed
    from .options import AnalysisOptions

    try:
        data = reader.data()
        options = AnalysisOptions.from_dict(header["options"])
        # The buffer is this child's alone: let the analysis free it once read.
        # Staged: the report without the wall check goes out before that check runs.
        first = (lambda early: send({"first": early.to_dict()})) if header.get("staged") else None
        report = analyse(
            data, header["file_name"], header["format"], options, consume=True, on_first=first
        )
        return {"report": report.to_dict()}
    except AnalysisFailed as exc:
        return {"failed": exc.reason}
    except MemoryError:
        return {"memory": True}
    except Exception as exc:  # reported for the logs, never to the client
        return {"error": type(exc).__name__}


class _Reader(threading.Thread):
    """Reads the file from a stream into one buffer: exactly `size` bytes, or,
    when the size is not known yet (an upload analysed while it streams in),
    everything up to the end of the stream into a buffer of `hint` bytes that
    grows if needed (realloc moves large buffers by remapping, not copying)."""

    def __init__(self, stream, size: int | None, hint: int = 0) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._size = size
        self._hint = hint
        self._buffer: bytearray | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            if self._size is None:
                self._buffer = self._read_to_end()
            else:
                self._buffer = self._read_exactly(self._size)
        except BaseException as exc:  # handed to the main thread
            self._error = exc

    def _read_exactly(self, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        done = 0
        while done < size:
            count = self._stream.readinto(view[done:])
            if not count:
                raise EOFError
            done += count
        return buffer

    def _read_to_end(self) -> bytearray:
        buffer = bytearray(self._hint)
        done = 0
        with memoryview(buffer) as view:
            while done < len(buffer):
                count = self._stream.readinto(view[done:])
                if not count:
                    break
                done += count
        if done < len(buffer):
            del buffer[done:]
            return buffer
        while chunk := self._stream.read1(1 << 20):
            buffer += chunk
        return buffer

    def data(self) -> bytearray:
        self.join()
        if isinstance(self._error, MemoryError):
            raise self._error
        if self._error is not None or self._buffer is None:
            from .errors import AnalysisFailed

            raise AnalysisFailed("The file arrived incomplete.")
        return self._buffer


def _limit(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    # A crash must not leave the customer's data in a core file.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        # No file reachable by a path may be written (see `confine`); memory
        # files (cascadio's memfd) may, up to the memory budget.
        forbid_writes()
        resource.setrlimit(resource.RLIMIT_FSIZE, (memory_bytes, memory_bytes))
    except OSError:
        # No Landlock in this kernel: forbid every file write instead, which
        # also stops cascadio, so STEP fails there (docs/analysis.md).
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def _peak_rss() -> int:
    """This process's own peak resident memory since exec (VmHWM).

    getrusage's ru_maxrss would include the parent's memory at fork time.
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    status = serve(socket.socket(fileno=0)) if sys.argv[1:] == ["--prefork"] else main()
    # Skip interpreter teardown (freeing hundreds of MB object by object):
    # the result is flushed and nothing else needs to happen.
    os._exit(status)
