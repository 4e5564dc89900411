"""numpy settings for the analysis child that depend on the processor.

numpy sorts 64-bit keys with x86-simd-sort, whose AVX-512 path stores through
`vpcompressq` to memory: microcoded on AMD Zen 4 (family 0x19), over 100 cycles
each, so that path is slower there than numpy's scalar sort (numpy PR #32690,
x86-simd-sort issue #6). Measured on this project's Zen 4 VM: 78 ns a key for
4 M keys with AVX-512, 11 ns with the AVX2 path. The weld and the edge pairing
are two such sorts (bench/analysis.py), so the child hides AVX-512 from numpy
on those processors and numpy takes its AVX2 path; elsewhere nothing changes.
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
ZEN_FAMILY = 0x19  # Zen 3 and Zen 4; Zen 5 (0x1A) fixed the compress store
# numpy 2.4's names for the AVX-512 feature groups it dispatches to.
AVX512_GROUPS = "X86_V4 AVX512_ICL"


def numpy_environment(cpuinfo: str | None = None) -> dict[str, str]:
    """Environment variables for a child process that will import numpy."""
    text = _read() if cpuinfo is None else cpuinfo
    first = text.split("\n\n", 1)[0]
    fields = dict(_field(line) for line in first.splitlines() if ":" in line)
    amd = fields.get("vendor_id") == "AuthenticAMD"
    family = int(fields.get("cpu family", "0") or 0)
    avx512 = "avx512f" in fields.get("flags", "").split()
    if amd and family == ZEN_FAMILY and avx512:
        return {"NPY_DISABLE_CPU_FEATURES": AVX512_GROUPS}
    return {}


def _field(line: str) -> tuple[str, str]:
    key, _, value = line.partition(":")
    return key.strip(), value.strip()


def _read() -> str:
    try:
        return CPUINFO.read_text(errors="replace")
    except OSError:
        return ""  # not Linux: nothing known, nothing changed
