"""Web previews of a mesh (domain/previews): the GLB, the PNG thumbnail, bad input.

The large cases run in a child process with the analysis child's limits (address
space, no file writes, scrubbed environment), as a preview job would.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from domain.previews import PreviewError, Previews, make_previews, rules
from tests import meshes_gen

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def glb_mesh(glb: bytes) -> trimesh.Trimesh:
    scene = trimesh.load(io.BytesIO(glb), file_type="glb", process=False)
    geometries = list(scene.geometry.values())
    assert len(geometries) == 1
    return geometries[0]


def glb_json(glb: bytes) -> dict:
    """The JSON chunk of a binary glTF, read by hand (not through trimesh)."""
    magic, version, length = struct.unpack_from("<4sII", glb, 0)
    assert (magic, version, length) == (b"glTF", 2, len(glb))
    chunk_length, chunk_type = struct.unpack_from("<I4s", glb, 12)
    assert chunk_type == b"JSON"
    return json.loads(glb[20 : 20 + chunk_length])


def glb_attribute(glb: bytes, name: str) -> np.ndarray:
    """A float32 VEC3 vertex attribute straight from the binary chunk (no trimesh)."""
    document = glb_json(glb)
    json_length = struct.unpack_from("<I", glb, 12)[0]
    bin_start = 20 + json_length + 8  # after the JSON chunk and the BIN chunk's header
    accessor = document["accessors"][document["meshes"][0]["primitives"][0]["attributes"][name]]
    view = document["bufferViews"][accessor["bufferView"]]
    assert (accessor["componentType"], accessor["type"]) == (5126, "VEC3")
    start = bin_start + view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    return np.frombuffer(glb, "<f4", accessor["count"] * 3, start).reshape(-1, 3)


def picture(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.mode == "RGBA"
    return np.asarray(image)


def foreground(rgba: np.ndarray) -> float:
    return float((rgba[..., 3] > 0).mean())


def assert_centred_metres(mesh: trimesh.Trimesh, extents_mm_zup) -> None:
    low, high = mesh.bounds
    extent = float(np.max(high - low))
    np.testing.assert_allclose((low + high) / 2, 0, atol=1e-6 * extent)
    x, y, z = extents_mm_zup
    # Metres, and +Y up as glTF requires: the part's Z becomes Y.
    np.testing.assert_allclose(high - low, np.array([x, z, y]) / 1000, rtol=1e-5)


# --- the GLB ---------------------------------------------------------------------------


def test_box_glb_is_centred_in_metres_with_flat_normals():
    previews = make_previews(*meshes_gen.box((20.0, 10.0, 5.0), origin=(100.0, -40.0, 7.0)))
    mesh = glb_mesh(previews.glb)
    assert len(mesh.faces) == previews.triangles == 12
    assert_centred_metres(mesh, (20.0, 10.0, 5.0))
    document = glb_json(previews.glb)
    primitive = document["meshes"][0]["primitives"][0]
    assert "NORMAL" in primitive["attributes"]
    # glTF requires min and max on POSITION; viewers frame the model with them.
    position = document["accessors"][primitive["attributes"]["POSITION"]]
    np.testing.assert_allclose(position["max"], [0.010, 0.0025, 0.005], rtol=1e-6)
    np.testing.assert_allclose(position["min"], [-0.010, -0.0025, -0.005], rtol=1e-6)
    # Split along the box's edges: every normal is one of the six axis directions
    # (averaged ones would point at the corners).
    normals = mesh.vertex_normals
    assert np.allclose(np.abs(normals).max(axis=1), 1.0, atol=1e-6)
    assert len(mesh.vertices) == 24  # 4 corners per side, not 8 shared


def test_glb_normals_point_outwards_on_a_smooth_surface():
    previews = make_previews(*meshes_gen.icosphere(4, radius=10.0))
    mesh = glb_mesh(previews.glb)
    assert previews.triangles == 5120
    radial = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1)[:, None]
    assert np.einsum("ij,ij->i", radial, mesh.vertex_normals).min() > 0.99
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), 0.010, rtol=1e-6)


@pytest.mark.parametrize(
    "mesh",
    [meshes_gen.mobius_strip(), meshes_gen.flipped(meshes_gen.icosphere(2), which=slice(0, 40))],
    ids=["mobius", "half-flipped-winding"],
)
def test_every_glb_normal_has_unit_length(mesh):
    # glTF requires it (the Khronos validator reports zero normals as errors): faces
    # of one smooth patch whose normals cancel at a vertex must not leave a zero.
    normals = glb_attribute(make_previews(*mesh).glb, "NORMAL")
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)


def test_large_model_is_simplified_to_the_budget_and_keeps_its_shape():
    vertices, faces = meshes_gen.icosphere(8, radius=10.0)  # 1,310,720 triangles
    previews = make_previews(vertices, faces)
    mesh = glb_mesh(previews.glb)
    assert len(faces) == 1_310_720
    assert 0.5 * rules.MAX_GLB_TRIANGLES < len(mesh.faces) <= rules.MAX_GLB_TRIANGLES
    assert len(mesh.faces) == previews.triangles
    # Still the 10 mm sphere, in metres: every vertex within 1% of the radius.
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), 0.010, rtol=0.01)
    # Closed like the input once the vertices split for sharp normals are joined again.
    joined = trimesh.Trimesh(mesh.vertices, mesh.faces)  # merges vertices by position
    assert joined.is_watertight
    assert joined.euler_number == 2
    assert len(previews.glb) < 10 * MIB


# --- the PNG ---------------------------------------------------------------------------


def test_thumbnail_is_512_square_shaded_and_not_blank():
    previews = make_previews(*meshes_gen.icosphere(4, radius=10.0))
    rgba = picture(previews.png)
    assert rgba.shape == (rules.THUMBNAIL_PIXELS, rules.THUMBNAIL_PIXELS, 4)
    # A sphere filling rules.FILL of the side covers pi/4 * FILL^2 of the picture.
    assert foreground(rgba) == pytest.approx(np.pi / 4 * rules.FILL**2, rel=0.03)
    lit = rgba[rgba[..., 3] == 255][:, :3].astype(int).sum(axis=1)
    assert lit.max() - lit.min() > 150  # shaded, not one flat colour
    assert rgba[0, 0, 3] == 0  # transparent background


def test_thumbnail_shows_the_hole_of_a_torus_and_three_sides_of_a_box():
    torus = picture(make_previews(*meshes_gen.torus()).png)
    middle = rules.THUMBNAIL_PIXELS // 2
    assert torus[middle, middle, 3] == 0  # seen through the hole
    assert torus[middle, middle // 4, 3] == 255  # the ring left of it
    box = picture(make_previews(*meshes_gen.box((20.0, 20.0, 20.0))).png)
    opaque = box[box[..., 3] == 255][:, :3]
    colours, counts = np.unique(opaque, axis=0, return_counts=True)
    # Three faces in view, each lit differently and each a large flat area.
    assert (counts > 0.05 * len(opaque)).sum() == 3
    assert len(colours[counts > 0.05 * len(opaque)]) == 3


def test_thumbnail_is_deterministic_and_depends_on_the_model():
    mesh = meshes_gen.torus()
    first, second = make_previews(*mesh), make_previews(*mesh)
    assert first.png == second.png
    assert first.glb == second.glb
    assert make_previews(*meshes_gen.box()).png != first.png


def test_nearer_triangle_hides_the_farther_one():
    # Two overlapping squares seen from the fixed view: the one nearer the viewer
    # must be drawn, whichever comes first in the triangle list.
    near = meshes_gen.box((10.0, 10.0, 1.0), origin=(0.0, 0.0, 10.0))
    far = meshes_gen.box((10.0, 10.0, 1.0), origin=(0.0, 0.0, 0.0))
    one = picture(make_previews(*meshes_gen.combine(near, far)).png)
    other = picture(make_previews(*meshes_gen.combine(far, near)).png)
    assert np.array_equal(one, other)


def test_previews_cross_a_pipe_as_one_frame():
    previews = make_previews(*meshes_gen.box())
    frame = previews.pack()
    assert Previews.unpack(frame) == previews
    for broken in (frame[:-1], frame + b"x", frame[:10], b"PVPREV2\n" + frame[8:]):
        with pytest.raises(ValueError):
            Previews.unpack(broken)


# --- bad input -------------------------------------------------------------------------


def test_one_triangle_gets_a_preview():
    vertices = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    previews = make_previews(vertices, np.array([[0, 1, 2]]))
    assert previews.triangles == 1
    assert len(glb_mesh(previews.glb).faces) == 1
    assert 0.05 < foreground(picture(previews.png)) < 0.6


def test_degenerate_triangles_are_dropped():
    vertices, faces = meshes_gen.with_collapsed_face(meshes_gen.box((10.0, 10.0, 10.0)))
    vertices = np.vstack([vertices, [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]]])
    n = len(vertices)
    faces = np.vstack([faces, [[n - 3, n - 2, n - 1]]])  # collinear: no area
    previews = make_previews(vertices, faces)
    assert previews.triangles == 12


def test_open_scan_and_non_orientable_surfaces_get_previews():
    vertices, faces = meshes_gen.icosphere(5, radius=30.0)
    bowl = faces[vertices[faces].mean(axis=1)[:, 2] < 5.0]  # open at the top
    previews = make_previews(vertices, bowl)
    assert previews.triangles == len(bowl)
    assert foreground(picture(previews.png)) > 0.3
    mobius = make_previews(*meshes_gen.mobius_strip())
    assert foreground(picture(mobius.png)) > 0.05


def test_far_from_the_origin_and_huge_models_are_centred():
    vertices, faces = meshes_gen.box((10.0, 20.0, 30.0), origin=(1e12, -1e12, 5e11))
    mesh = glb_mesh(make_previews(vertices, faces).glb)
    assert_centred_metres(mesh, (10.0, 20.0, 30.0))
    vertices, faces = meshes_gen.box((1e20, 2e20, 3e20))
    mesh = glb_mesh(make_previews(vertices, faces).glb)
    assert_centred_metres(mesh, (1e17 * 1000, 2e17 * 1000, 3e17 * 1000))


def test_stray_vertices_do_not_move_or_widen_the_previews():
    vertices, faces = meshes_gen.box((10.0, 10.0, 10.0))
    strays = np.array([[1e6, 1e6, 1e6], [-5e5, 0.0, 0.0]])
    previews = make_previews(np.vstack([vertices, strays]), faces)
    mesh = glb_mesh(previews.glb)
    assert_centred_metres(mesh, (10.0, 10.0, 10.0))
    assert picture(previews.png).tobytes() == picture(make_previews(vertices, faces).png).tobytes()


def stacked_squares(count: int, size: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """`count` squares stacked 10 mm high in all: every triangle covers much of the view."""
    corners = np.array([[0, 0, 0], [size, 0, 0], [size, size, 0], [0, size, 0]], dtype=float)
    heights = np.arange(count)[:, None, None] * np.array([0, 0, 10.0 / count])
    vertices = (corners[None] + heights).reshape(-1, 3)
    base = np.arange(count)[:, None, None] * 4
    faces = (base + np.array([[0, 1, 2], [0, 2, 3]])[None]).reshape(-1, 3)
    return vertices, faces


def test_many_large_overlapping_triangles_are_drawn_in_bounded_time():
    # ~75 M samples to test with supersampling: drawn without it (~19 M).
    rgba = picture(make_previews(*stacked_squares(150)).png)
    assert foreground(rgba) > 0.15
    assert set(np.unique(rgba[..., 3])) == {0, 255}  # one sample a pixel: no partial cover
    # ~3e11 samples: refused at once rather than drawn for hours.
    started = time.monotonic()
    with pytest.raises(PreviewError, match="too complex"):
        make_previews(*stacked_squares(100_000))
    assert time.monotonic() - started < 60


def test_triangle_soup_beyond_the_budget_is_simplified():
    # Unconnected triangles: edge collapse cannot join them; clustering must.
    rng = np.random.default_rng(7)
    count = 300_000
    corners = rng.random((count, 1, 3)) * 100 + rng.normal(scale=0.3, size=(count, 3, 3))
    vertices = corners.reshape(-1, 3)
    faces = np.arange(3 * count).reshape(-1, 3)
    previews = make_previews(vertices, faces)
    assert 0 < previews.triangles <= rules.MAX_GLB_TRIANGLES
    assert len(glb_mesh(previews.glb).faces) == previews.triangles
    assert foreground(picture(previews.png)) > 0.1


@pytest.mark.parametrize(
    ("vertices", "faces", "reason"),
    [
        (np.zeros((3, 3)), np.zeros((0, 3), dtype=int), "no triangles"),
        (np.zeros((0, 3)), np.zeros((0, 3), dtype=int), "no triangles"),
        (np.ones((3, 3)) * 5, np.array([[0, 1, 2]]), "no extent"),
        (
            np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2.0]]),
            np.array([[0, 1, 2]]),
            "no triangle with an area",
        ),
        (np.eye(3), np.array([[0, 1, 3]]), "vertices it does not have"),
        (np.eye(3), np.array([[0, 1, -1]]), "vertices it does not have"),
        (np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]]), np.array([[0, 1, 2]]), "not numbers"),
        (np.array([[0, 0, 0], [1, 0, 0], [0, np.inf, 0]]), np.array([[0, 1, 2]]), "not numbers"),
        (np.eye(3) * 1e40, np.array([[0, 1, 2]]), "too large"),
        (
            np.array([[-1e308, 0, 0], [1e308, 0, 0], [0, 1e308, 0]]),
            np.array([[0, 1, 2]]),
            "too large",
        ),
        (np.zeros((3, 2)), np.array([[0, 1, 2]]), "not a triangle mesh"),
        (np.eye(3), np.array([[0.0, 1.0, 2.0]]), "not a triangle mesh"),
        (np.eye(3), np.array([[0, 1, 2, 0]]), "not a triangle mesh"),
    ],
)
def test_unusable_meshes_raise_a_clean_reason(vertices, faces, reason):
    with pytest.raises(PreviewError) as caught:
        make_previews(vertices, faces)
    assert reason in caught.value.reason


def test_too_many_triangles_are_refused_before_any_work():
    # A read-only broadcast view: 8 M rows that take no memory.
    faces = np.broadcast_to(np.array([[0, 1, 2]]), (rules.MAX_INPUT_TRIANGLES + 1, 3))
    with pytest.raises(PreviewError, match="more than"):
        make_previews(np.eye(3), faces)


def test_other_dtypes_are_accepted():
    vertices, faces = meshes_gen.box((5.0, 5.0, 5.0))
    previews = make_previews(vertices.astype(np.float32), faces.astype(np.int32))
    assert isinstance(previews, Previews)
    assert previews.triangles == 12


# --- inside the limits of an isolated child ----------------------------------------------

CHILD = """
import json, os, resource, sys, time
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
from domain.previews import PreviewError, make_previews
from tests import meshes_gen
kind, args = json.loads(sys.argv[1])
vertices, faces = getattr(meshes_gen, kind)(*args)
started = time.monotonic()
try:
    p = make_previews(vertices, faces)
    result = {"triangles": p.triangles, "glb": len(p.glb), "png": len(p.png)}
except PreviewError as error:
    result = {"reason": error.reason}
result["seconds"] = time.monotonic() - started
status = open("/proc/self/status").read().split("\\n")
fields = dict(line.split(":", 1) for line in status if ":" in line)
result["threads"] = int(fields["Threads"])
result["peak_mib"] = int(fields["VmHWM"].split()[0]) // 1024
print(json.dumps(result))
"""


def run_limited(kind: str, args: list, tmp_path: Path, memory_bytes: int = 4096 * MIB) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.defpath,
        "LC_ALL": "C.UTF-8",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(ROOT),
        "HOME": str(home),
        "TMPDIR": str(home),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([kind, args]), str(memory_bytes)],
        cwd=home, env=env, capture_output=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert list(home.iterdir()) == []  # nothing written where a library might
    return json.loads(done.stdout)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_five_million_triangles_within_the_analysis_child_limits(tmp_path):
    result = run_limited("torus", [2048, 1280], tmp_path)
    assert 0 < result["triangles"] <= rules.MAX_GLB_TRIANGLES
    assert result["threads"] == 1  # no thread started by any library
    assert result["peak_mib"] < 4096
    print(f"5,242,880 triangles: {result}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_small_models_within_a_small_memory_limit(tmp_path):
    result = run_limited("box", [], tmp_path, memory_bytes=1024 * MIB)
    assert result["triangles"] == 12
    assert result["threads"] == 1


# --- real meshes, when ../shared is there ------------------------------------------------

SHARED = ROOT.parent / "shared" / "meshes"


@pytest.mark.parametrize("name", ["bunny.ply", "20mm-xyz-cube.stl", "soup.stl"])
def test_shared_meshes_get_previews(name):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} is not there")
    loaded = trimesh.load(path, force="mesh", process=False)
    previews = make_previews(np.asarray(loaded.vertices), np.asarray(loaded.faces))
    assert 0 < previews.triangles <= rules.MAX_GLB_TRIANGLES
    rgba = picture(previews.png)
    assert 0.05 < foreground(rgba) < 0.9
