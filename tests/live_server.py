"""A real server process for attack tests: raw sockets, its memory, its peak memory.

Abuse of the transport (huge bodies, slow clients) only shows against the server
that production runs (uvicorn and its HTTP protocol), so these tests never use the
in-process ASGI client.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tests.server_process import start_server

MB = 1024 * 1024


class LiveServer:
    """A real `server.py serve` process (port 0, read from its log: tests/server_process.py)."""

    def __init__(self, env: dict[str, str]) -> None:
        handle, name = tempfile.mkstemp(prefix="pv-live-", suffix=".log")
        os.close(handle)
        self._log = Path(name)
        self.process, self.port = start_server({**os.environ, **env}, self._log, timeout=60)
        self.url = f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.unlink(missing_ok=True)


class PeakRss:
    """Samples the server's resident memory every 20 ms while the block runs."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self.baseline = self.peak = self.server.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # what the server still does after the client stopped
        self._stop.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.server.rss())
            except psutil.Error:
                return
            time.sleep(0.02)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB


class RawExchange:
    """One request written by hand over a socket, the answer read by a second thread.

    The reader runs from the start, so an early answer (413 while the client is still
    sending) is caught before the server closes the connection.
    """

    def __init__(self, server: LiveServer) -> None:
        self.sock = server.connect()
        self.answer = bytearray()
        self.closed_at: float | None = None
        self.sent = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:  # our own socket time-out: the server has not closed
                continue
            except OSError:  # reset by the server, or closed by us
                chunk = b""
            if not chunk:
                self.closed_at = time.monotonic()
                return
            self.answer += chunk

    def send(self, data: bytes) -> bool:
        """False once the server no longer takes data."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        self.sent += len(data)
        return True

    def wait_closed(self, seconds: float) -> bool:
        self._reader.join(timeout=seconds)
        return self.closed_at is not None

    def status(self) -> int:
        line = bytes(self.answer).split(b"\r\n", 1)[0]
        return int(line.split()[1]) if line.startswith(b"HTTP/") else 0

    def header(self, name: str) -> str | None:
        head = bytes(self.answer).split(b"\r\n\r\n", 1)[0].decode("latin-1")
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None

    def body(self) -> bytes:
        return bytes(self.answer).split(b"\r\n\r\n", 1)[1]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
