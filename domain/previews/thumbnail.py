"""A shaded PNG of a unit-frame mesh from the fixed three-quarter view, in memory."""

from __future__ import annotations

import io

import numpy as np

from . import rules
from .errors import PreviewError
from .raster import candidate_samples, nearest_faces
from .view import view_rotation


def render_png(
    vertices: np.ndarray, faces: np.ndarray, pixels: int = rules.THUMBNAIL_PIXELS
) -> bytes:
    """PNG bytes (RGBA, transparent background) of the mesh, `pixels` square."""
    rgba = render_rgba(vertices, faces, pixels)
    return encode_png(rgba)


def render_rgba(vertices: np.ndarray, faces: np.ndarray, pixels: int) -> np.ndarray:
    view = vertices @ view_rotation().T
    # Time is bounded by the samples tested: at most rules.MAX_CANDIDATE_SAMPLES.
    # Fine meshes test about as many as the picture has; many large triangles
    # stacked over each other test far more, and are drawn without supersampling.
    for supersampling in (rules.SUPERSAMPLING, 1):
        samples = pixels * supersampling
        screen = _fit(view, faces, samples)
        if candidate_samples(screen, faces, samples, samples) <= rules.MAX_CANDIDATE_SAMPLES:
            break
    else:
        raise PreviewError("The model is too complex to draw a thumbnail of.")
    nearest = nearest_faces(screen, faces, samples, samples)
    normals = _facing_normals(view, faces)
    shade = _shades(normals)
    covered = nearest >= 0
    colour = np.zeros((samples * samples, 3))
    colour[covered] = shade[nearest[covered], None] * np.asarray(rules.BASE_COLOUR)
    colour[_creases(nearest, normals, samples)] *= rules.CREASE_SHADE
    return _downsample(colour, covered, pixels, supersampling)


def _fit(view: np.ndarray, faces: np.ndarray, samples: int) -> np.ndarray:
    """Scale and shift so the model's projection fills rules.FILL of the picture."""
    used = view[np.unique(faces)]  # a stray vertex must not shrink the picture
    low, high = used[:, :2].min(axis=0), used[:, :2].max(axis=0)
    extent = float(np.max(high - low))
    if not extent > 0:
        raise PreviewError("The model has no extent.")
    scale = rules.FILL * samples / extent
    centre = (low + high) / 2
    screen = np.empty_like(view)
    screen[:, 0] = (view[:, 0] - centre[0]) * scale + samples / 2
    screen[:, 1] = samples / 2 - (view[:, 1] - centre[1]) * scale  # rows grow downwards
    screen[:, 2] = view[:, 2]
    return screen


def _facing_normals(view: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normal per triangle, of the side facing the viewer (both sides are lit:
    open scans show their inside)."""
    a = view[faces[:, 0]]
    normal = np.cross(view[faces[:, 1]] - a, view[faces[:, 2]] - a)
    length = np.linalg.norm(normal, axis=1)
    normal /= np.where(length > 0, length, 1.0)[:, None]
    normal[normal[:, 2] < 0] *= -1
    return normal


def _shades(normal: np.ndarray) -> np.ndarray:
    """Lambert: key light, head light and ambient."""
    light = np.asarray(rules.LIGHT_DIRECTION) / np.linalg.norm(rules.LIGHT_DIRECTION)
    key = np.clip(normal @ light, 0.0, 1.0)
    return rules.AMBIENT + rules.DIFFUSE * key + rules.HEADLIGHT * normal[:, 2]


def _face_shades(view: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return _shades(_facing_normals(view, faces))


def _creases(nearest: np.ndarray, normals: np.ndarray, samples: int) -> np.ndarray:
    """Samples where the visible surface turns sharply to the next sample's: drawn
    darker, so an engraved letter or a pocket reads even where its floor and the
    face around it have the same shade."""
    image = nearest.reshape(samples, samples)
    marked = np.zeros((samples, samples), dtype=bool)
    limit = np.cos(np.radians(rules.CREASE_DEGREES))
    for here, there, mark in (
        (image[:, :-1], image[:, 1:], marked[:, :-1]),
        (image[:-1, :], image[1:, :], marked[:-1, :]),
    ):
        both = (here != there) & (here >= 0) & (there >= 0)
        turn = np.einsum("ij,ij->i", normals[here[both]], normals[there[both]]) < limit
        mark[both] |= turn  # a view into `marked`
    return marked.ravel()


def _downsample(colour: np.ndarray, covered: np.ndarray, pixels: int, s: int) -> np.ndarray:
    """Average each s x s block: anti-aliased colour and coverage (alpha)."""
    blocks = (pixels, s, pixels, s)
    cover = covered.reshape(blocks).mean(axis=(1, 3))
    summed = colour.reshape(*blocks, 3).mean(axis=(1, 3))
    rgb = summed / np.where(cover > 0, cover, 1.0)[..., None]
    rgba = np.concatenate([rgb, cover[..., None]], axis=2)
    return np.clip(np.rint(rgba * 255), 0, 255).astype(np.uint8)


def encode_png(rgba: np.ndarray) -> bytes:
    """PNG bytes of an (h, w, 4) or (h, w, 3) uint8 picture, in memory."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
