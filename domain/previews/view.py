"""The fixed three-quarter view: a rotation from the unit frame to view space."""

from __future__ import annotations

import numpy as np

from . import rules


def view_rotation(
    azimuth_deg: float = rules.VIEW_AZIMUTH_DEGREES,
    elevation_deg: float = rules.VIEW_ELEVATION_DEGREES,
) -> np.ndarray:
    """3x3 rows (right, up, towards the viewer) for a Z-up part seen from the front right.

    Azimuth is measured from the front (-Y) towards +X, elevation from the XY plane
    upwards. At (0, 0) the picture is the front view: X to the right, Z up.
    """
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    towards_viewer = np.array([np.cos(el) * np.sin(az), -np.cos(el) * np.cos(az), np.sin(el)])
    right = np.cross([0.0, 0.0, 1.0], towards_viewer)
    right /= np.linalg.norm(right)
    up = np.cross(towards_viewer, right)
    return np.stack([right, up, towards_viewer])
