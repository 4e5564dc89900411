"""Child side of `sandbox.run_isolated`: `python -m domain.analysis.worker`.

Reads one JSON header line and the file's bytes from stdin, writes one JSON
result to the stdout it was given. Native libraries print to stdout
(OpenCASCADE does), so fd 1 is pointed at /dev/null and the result goes to a
private duplicate of the original pipe.

Only the standard library is imported up front: the input is read by a
thread while numpy and the analysis modules load (about 60 ms each for a
65 MB upload, so they overlap instead of adding up).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading

from .confine import forbid_writes

MAX_HEADER = 1 << 16


def main() -> int:
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    header = json.loads(sys.stdin.buffer.readline(MAX_HEADER))
    _limit(header["memory_bytes"], header["cpu_seconds"])
    reader = _Reader(sys.stdin.buffer, int(header["size"]))
    reader.start()
    message = _analyse(reader, header)
    message["peak_rss_bytes"] = _peak_rss()
    result.write(json.dumps(message).encode())
    result.flush()
    return 0


def _analyse(reader: _Reader, header: dict) -> dict:
    # Imported here, while the reader thread fills the buffer.
    from .core import analyse
    from .errors import AnalysisFailed
    from .options import AnalysisOptions

    try:
        data = reader.data()
        options = AnalysisOptions.from_dict(header["options"])
        report = analyse(data, header["file_name"], header["format"], options)
        return {"report": report.to_dict()}
    except AnalysisFailed as exc:
        return {"failed": exc.reason}
    except MemoryError:
        return {"memory": True}
    except Exception as exc:  # reported for the logs, never to the client
        return {"error": type(exc).__name__}


class _Reader(threading.Thread):
    """Reads exactly `size` bytes from a stream into one buffer."""

    def __init__(self, stream, size: int) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._size = size
        self._buffer: bytearray | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._buffer = bytearray(self._size)
            view = memoryview(self._buffer)
            done = 0
            while done < self._size:
                count = self._stream.readinto(view[done:])
                if not count:
                    raise EOFError
                done += count
        except BaseException as exc:  # handed to the main thread
            self._error = exc

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
    status = main()
    # Skip interpreter teardown (freeing hundreds of MB object by object):
    # the result is flushed and nothing else needs to happen.
    os._exit(status)
