"""The analysis child's numpy settings per processor (domain/analysis/cpu_tuning.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from domain.analysis.cpu_tuning import numpy_environment
from domain.analysis.sandbox import child_environment


def _cpuinfo(vendor: str, family: int, flags: str) -> str:
    block = f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nflags\t\t: {flags}\n"
    return block + "\n" + block.replace("processor\t: 0", "processor\t: 1")


def test_avx512_is_hidden_from_numpy_on_zen_4_only() -> None:
    zen4 = _cpuinfo("AuthenticAMD", 25, "fpu sse avx2 avx512f avx512dq avx512bw")
    assert numpy_environment(zen4) == {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL"}
    for other in (
        _cpuinfo("AuthenticAMD", 25, "fpu sse avx2"),  # Zen 3: no AVX-512 to hide
        _cpuinfo("AuthenticAMD", 26, "fpu avx2 avx512f"),  # Zen 5 fixed the slow store
        _cpuinfo("GenuineIntel", 6, "fpu avx2 avx512f"),  # the path it was tuned on
        "",  # no /proc/cpuinfo
        "garbage without fields",
    ):
        assert numpy_environment(other) == {}


def test_the_child_environment_carries_it_and_numpy_accepts_it() -> None:
    tuning = numpy_environment()  # this machine's
    env = child_environment()
    assert {k: v for k, v in env.items() if k.startswith("NPY_")} == tuning
    # numpy refuses unknown or baseline feature names at import, and warns about ones
    # the machine lacks: on this machine, the child's import must be clean.
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import numpy; numpy.sort(numpy.arange(9)[::-1])"],
        env={**os.environ, **tuning},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
