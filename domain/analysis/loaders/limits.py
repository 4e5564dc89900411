"""Checks shared by the loaders."""

from __future__ import annotations

from ..errors import AnalysisFailed


def check_triangle_count(count: int, max_triangles: int) -> None:
    if count > max_triangles:
        raise AnalysisFailed(
            f"The model has more than {max_triangles:,} triangles; "
            "please reduce its resolution before uploading."
        )
