"""Turn a file's bytes into a triangle soup: an (n, 3, 3) array in millimetres.

Which loader reads which format, and in which unit, is written once, in the
format registry (`domain.formats.REGISTRY`). One module per family of
formats. Every loader raises AnalysisFailed with a readable reason for files
it cannot use; third-party exceptions never leak (their text may contain
paths or internals).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import numpy as np

from ...formats import FORMATS, Format
from ..errors import AnalysisFailed
from ..options import AnalysisOptions


def load_corners(data: bytes, fmt: str, options: AnalysisOptions) -> tuple[np.ndarray, Any]:
    """The triangle soup in mm, and exact measures when the format has them
    (STEP's B-rep: `step.Exact`), else None."""
    known = FORMATS.get(fmt)
    if known is None:
        raise AnalysisFailed(f"Files of type '{fmt[:16]}' are not supported.")
    if known.refused:
        raise AnalysisFailed(known.refused)
    try:
        loaded = _loader(known)(data, fmt, options)
    except (AnalysisFailed, MemoryError):
        raise
    except Exception as exc:  # third-party parsers fail in many ways
        raise AnalysisFailed(
            f"The file could not be read as {known.label}: it is damaged or not in this format."
        ) from exc
    corners, exact = loaded if isinstance(loaded, tuple) else (loaded, None)
    if known.unit_mm not in (None, 1.0) and len(corners):
        corners = corners * known.unit_mm
    return corners, exact


def _loader(known: Format):
    module, function = known.loader.split(":")
    return getattr(import_module(f".{module}", __name__), function)
