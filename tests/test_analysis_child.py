"""Every format through the production path: the isolated analysis child with
its real limits, fed the way the job feeds it (a bytearray of decrypted
bytes through a pipe), and proof that no file is written on the way."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from domain.analysis import AnalysisOptions, sandbox
from domain.analysis.confine import landlock_abi
from runtime.settings import Settings
from tests import meshes_gen as gen

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings()
OPTIONS = AnalysisOptions.from_settings(SETTINGS)
RTOL = 1e-6


def _gltf(mesh: gen.Mesh) -> bytes:
    import trimesh

    vertices, faces = mesh
    files = trimesh.Trimesh(vertices / 1000, faces, process=False).export(
        file_type="gltf", embed_buffers=True
    )
    return files["model.gltf"]


BOX = gen.box((10, 20, 30), (5, -7, 2))
FILES = {
    "stl-binary": (lambda: gen.binary_stl(BOX), "stl"),
    "stl-ascii": (lambda: gen.ascii_stl(BOX), "stl"),
    "obj": (lambda: gen.obj(BOX), "obj"),
    "ply": (lambda: gen.ply(BOX), "ply"),
    "off": (lambda: gen.off(BOX), "off"),
    "3mf": (lambda: gen.simple_3mf(BOX), "3mf"),
    "glb": (lambda: gen.glb(BOX, metres_per_unit=0.001), "glb"),
    "gltf": (lambda: _gltf(BOX), "gltf"),
    "step": (lambda: gen.step_box((10, 20, 30)), "step"),
}


def isolated(data: bytes, fmt: str):
    """Exactly what `AnalysisJob._process` does with a fetched file."""
    return sandbox.run_isolated(
        bytearray(data),
        f"part.{fmt}",
        fmt,
        OPTIONS,
        float(SETTINGS.analysis_timeout_seconds),
        SETTINGS.analysis_memory_bytes,
    )


@pytest.mark.parametrize("kind", list(FILES))
def test_every_format_is_measured_in_the_child(kind):
    make, fmt = FILES[kind]
    report = isolated(make(), fmt)
    assert report.volume == pytest.approx(6000, rel=RTOL)
    assert report.surface_area == pytest.approx(2200, rel=RTOL)
    assert report.is_watertight and report.body_count == 1
    assert report.printability.printable, report.printability.issues


# No plaintext byte reaches a disk-backed file -----------------------------------------

needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
needs_landlock = pytest.mark.skipif(landlock_abi() < 1, reason="the kernel has no Landlock")

# Calls that create, write, rename or remove something reachable by a path.
_TRACED = "openat,open,creat,mkdir,mkdirat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,unlink,unlinkat,truncate,memfd_create,mknod,mknodat"
_CALL = re.compile(r"^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\((.*)\)\s+=\s+(-?\d+)")
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")


def _calls(trace: str) -> list[str]:
    """One line per call: strace splits a call interrupted by another thread into
    "<unfinished ...>" and "<... name resumed>"; join them again."""
    pending: dict[str, str] = {}
    calls = []
    for raw in trace.splitlines():
        line = raw.strip()
        pid, _, rest = line.partition(" ")
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest.removesuffix("<unfinished ...>")
        elif rest.startswith("<... ") and "resumed>" in rest:
            calls.append(pending.pop(pid, "") + rest.split("resumed>", 1)[1])
        else:
            calls.append(rest if pid.isdigit() else line)
    return calls + list(pending.values())


def _writes(trace: str) -> list[str]:
    """Successful calls that wrote to, or changed, something reachable by a path."""
    found = []
    for line in _calls(trace):
        match = _CALL.match(line.strip())
        if not match:
            if "(" in line and "= -1" not in line and "+++" not in line and "---" not in line:
                found.append(f"unparsed: {line}")  # never let a line slip through
            continue
        if int(match.group(3)) < 0:
            continue
        call, args = match.group(1), match.group(2)
        if call in ("open", "openat"):
            if not any(flag in args for flag in _WRITE_FLAGS):
                continue
            # A memfd is reopened through its /proc link (cascadio); /dev/null is nothing.
            if re.search(r'"(/dev/null|/proc/self/fd/\d+)"', args):
                continue
        elif call == "memfd_create":
            continue  # memory-backed by definition
        found.append(line.strip())
    return found


def _traced_child(data: bytes, fmt: str, tmp_path: Path) -> tuple[dict, str]:
    """Run the child program under strace, fed as `run_isolated` feeds it."""
    header = {
        "file_name": "upload",
        "format": fmt,
        "size": len(data),
        "options": OPTIONS.to_dict(),
        "memory_bytes": SETTINGS.analysis_memory_bytes,
        "cpu_seconds": 60,
    }
    log = tmp_path / "trace.log"  # the trace holds paths, never file content
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", f"trace={_TRACED}", "-o", str(log),
         *sandbox.child_command()],
        input=json.dumps(header).encode() + b"\n" + data,
        capture_output=True,
        cwd=ROOT,
        env=sandbox.child_environment(),
        timeout=120,
        check=False,
    )
    return json.loads(result.stdout), log.read_text()


@needs_strace
@pytest.mark.parametrize("kind", ["step", "3mf", "gltf", "stl-binary"])
def test_child_writes_no_file(kind, tmp_path):
    make, fmt = FILES[kind]
    message, trace = _traced_child(make(), fmt, tmp_path)
    assert "report" in message, message
    assert message["report"]["volume"] == pytest.approx(6000, rel=RTOL)
    assert "openat" in trace  # the trace did see the child's file calls
    assert _writes(trace) == []
    if kind == "step":
        assert "memfd_create" in trace  # cascadio's GLB: in memory, as claimed


def test_the_trace_check_sees_a_written_file(tmp_path):
    """The check above is not blind: a file write shows up in it."""
    sample = (
        'openat(AT_FDCWD, "/tmp/x", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3\n'
        'openat(AT_FDCWD, "/proc/self/fd/7", O_RDWR) = 8\n'
        'openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC) = 3\n'
        '12 renameat2(AT_FDCWD, "/tmp/a", AT_FDCWD, "/tmp/b", 0) = 0\n'
        '13 openat(AT_FDCWD, "/var/tmp/y", O_WRONLY|O_CREAT <unfinished ...>\n'
        "14 memfd_create(\"x\", 0) = 9\n"
        "13 <... openat resumed>, 0666) = 4\n"
    )
    assert len(_writes(sample)) == 3


@needs_landlock
def test_confined_child_cannot_write_files(tmp_path):
    """Whatever a hostile file makes the parser do, the child cannot write a file."""
    target = tmp_path / "leak.bin"
    script = (
        "import os, sys\n"
        "from domain.analysis.confine import forbid_writes\n"
        "forbid_writes()\n"
        "failures = []\n"
        f"for attempt in (lambda: open({str(target)!r}, 'wb'),\n"
        f"                lambda: os.mkdir({str(tmp_path / 'dir')!r}),\n"
        "                lambda: open('/dev/shm/leak', 'wb')):\n"
        "    try:\n"
        "        attempt()\n"
        "    except OSError:\n"
        "        failures.append(1)\n"
        "fd = os.memfd_create('ok')\n"
        "os.write(fd, b'in memory')\n"
        "print(len(failures))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "3"
    assert not target.exists() and not (tmp_path / "dir").exists()


# STEP: exact volumes of analytic parts, in three units --------------------------------


@pytest.mark.parametrize("unit", list(gen.STEP_UNITS_MM))
@pytest.mark.parametrize("kind", gen.STEP_PARTS)
def test_step_parts_have_exact_volumes(kind, unit):
    data, exact = gen.step_part(kind, unit)
    report = isolated(data, "step")
    assert report.volume == pytest.approx(exact, rel=1e-4)
    assert report.is_watertight
    assert report.body_count == (3 if kind == "assembly" else 1)
    # Sizes are about 30 mm whatever the unit the file is written in.
    assert max(report.dimensions.x, report.dimensions.y, report.dimensions.z) < 70


@needs_strace
def test_pre_forked_children_write_no_file(monkeypatch, tmp_path):
    """The production path: the pre-forking process and the children it forks, traced,
    fed by the job (a fetched file) and by an upload as it streams in."""
    log = tmp_path / "trace.log"
    traced = ["strace", "-f", "-qq", "-e", f"trace={_TRACED}", "-o", str(log)]
    monkeypatch.setattr(sandbox, "child_command", lambda: [*traced, *sandbox_command])
    monkeypatch.setattr(sandbox, "_prefork", sandbox._Prefork())
    try:
        for kind in ("step", "3mf", "stl-binary"):
            make, fmt = FILES[kind]
            assert isolated(make(), fmt).volume == pytest.approx(6000, rel=RTOL)
            early = sandbox.StreamedAnalysis.start(
                fmt, OPTIONS, 120.0, SETTINGS.analysis_memory_bytes, size_hint=1000
            )
            assert early is not None
            data = make()
            for start in range(0, len(data), 700):
                early.feed(data[start : start + 700])
            early.finish(len(data))
            assert early.future.result(timeout=120).volume == pytest.approx(6000, rel=RTOL)
    finally:
        sandbox._prefork.stop()
    trace = log.read_text()
    assert "memfd_create" in trace and "openat" in trace
    assert _writes(trace) == []


sandbox_command = sandbox.child_command()
