"""Geometry analysis of uploaded CAD files: size, volume, area, printability.

Pure domain code (numpy, no HTTP, no database). Entry points:

- `analyse(data, file_name, fmt, options)` measures in this process;
- `run_isolated(...)` (in `sandbox`) does the same in a child process with
  time and memory limits: use it for uploads.

Names are imported on first use, so that the analysis child process can
start reading its input before numpy is loaded (see `child`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_EXPORTS = {
    "AnalysisFailed": ".errors",
    "AnalysisOptions": ".options",
    "Dimensions": ".report",
    "Issue": ".report",
    "MeshReport": ".report",
    "Printability": ".report",
    "analyse": ".core",
    "run_isolated": ".sandbox",
}
__all__ = [
    "AnalysisFailed",
    "AnalysisOptions",
    "Dimensions",
    "Issue",
    "MeshReport",
    "Printability",
    "analyse",
    "run_isolated",
]

if TYPE_CHECKING:
    from .core import analyse
    from .errors import AnalysisFailed
    from .options import AnalysisOptions
    from .report import Dimensions, Issue, MeshReport, Printability
    from .sandbox import run_isolated


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
