"""`server.py serve` as a real process, on a port the OS picks.

PORT=0 makes uvicorn bind any free port and log the one it got
("Uvicorn running on http://127.0.0.1:PORT"); the port is read from that log.
No port is probed and released first, so no other process can take it in between.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_RUNNING = re.compile(rb"running on https?://[^\s:]+:(\d+)")


def start_server(env: dict[str, str], log_path: Path, timeout: float = 120) -> tuple[subprocess.Popen, int]:
    """Start the server with its output in `log_path`; return it and its port once it serves."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "server.py", "serve"],
            cwd=REPO,
            env={**env, "PORT": "0"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _RUNNING.search(log_path.read_bytes())
        if found:  # uvicorn logs it after the lifespan started: the app is ready
            return process, int(found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    process.wait(timeout=30)
    raise AssertionError(f"server did not start:\n{log_path.read_text(errors='replace')}")
