"""Geometry analysis: analytic truth, printability checks, hostile files, sandbox."""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from domain.analysis import AnalysisFailed, AnalysisOptions, MeshReport, analyse, sandbox
from domain.analysis.components import component_roots
from domain.analysis.weld import weld
from tests import meshes_gen as gen

OPTIONS = AnalysisOptions()
RTOL = 1e-6


def run(data: bytes, fmt: str = "stl", name: str = "part", **options) -> MeshReport:
    chosen = AnalysisOptions(**options) if options else OPTIONS
    return analyse(data, f"{name}.{fmt}", fmt, chosen)


def codes(report: MeshReport) -> dict[str, str]:
    return {issue.code: issue.severity for issue in report.printability.issues}


def issue(report: MeshReport, code: str):
    return next(i for i in report.printability.issues if i.code == code)


def exact_volume_area(mesh: gen.Mesh, dtype=np.float64) -> tuple[float, float]:
    """Reference values computed independently, with exactly rounded sums."""
    vertices, faces = mesh
    corners = np.asarray(vertices, dtype=dtype).astype(np.float64)[faces]
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    volume = math.fsum(np.einsum("ij,ij->i", a, np.cross(b, c)) / 6)
    area = math.fsum(np.linalg.norm(np.cross(b - a, c - a), axis=1) / 2)
    return volume, area


# Analytic truth -----------------------------------------------------------------


@pytest.mark.parametrize("origin", [(0, 0, 0), (10_000, -5_000, 20_000)])
@pytest.mark.parametrize(
    ("writer", "fmt"),
    [
        (gen.binary_stl, "stl"),
        (gen.ascii_stl, "stl"),
        (gen.obj, "obj"),
        (gen.ply, "ply"),
        (gen.off, "off"),
        (gen.simple_3mf, "3mf"),
    ],
)
def test_box_matches_analytic_values(writer, fmt, origin):
    report = run(writer(gen.box((10, 20, 30), origin)), fmt)
    assert report.volume == pytest.approx(6000, rel=RTOL)
    assert report.surface_area == pytest.approx(2200, rel=RTOL)
    assert (report.dimensions.x, report.dimensions.y, report.dimensions.z) == pytest.approx(
        (10, 20, 30), rel=RTOL
    )
    assert report.triangle_count == 12
    assert report.body_count == 1
    assert report.is_watertight
    assert report.printability.printable
    assert report.printability.issues == ()
    assert report.format == fmt
    assert report.file_name == f"part.{fmt}"


def test_octahedron_matches_analytic_values():
    report = run(gen.ascii_stl(gen.octahedron(5.0, origin=(3, 4, 5))))
    assert report.volume == pytest.approx(4 / 3 * 125, rel=RTOL)
    assert report.surface_area == pytest.approx(4 * math.sqrt(3) * 25, rel=RTOL)


@pytest.mark.parametrize(
    ("writer", "dtype"), [(gen.ascii_stl, np.float64), (gen.binary_stl, np.float32)]
)
def test_polyhedron_matches_exact_sums(writer, dtype):
    sphere = gen.icosphere(4, radius=25.0)
    volume, area = exact_volume_area(sphere, dtype)
    report = run(writer(sphere))
    assert report.volume == pytest.approx(volume, rel=1e-12)
    assert report.surface_area == pytest.approx(area, rel=1e-12)
    assert report.triangle_count == len(sphere[1])
    assert report.is_watertight and report.body_count == 1


def test_glb_is_in_metres():
    report = run(gen.glb(gen.box((0.01, 0.02, 0.03))), "glb")
    assert report.volume == pytest.approx(6000, rel=RTOL)
    assert report.dimensions.z == pytest.approx(30, rel=RTOL)


@pytest.mark.parametrize(
    ("unit", "scale"),
    [
        ("micron", 0.001),
        ("millimeter", 1),
        ("centimeter", 10),
        ("inch", 25.4),
        ("foot", 304.8),
        ("meter", 1000),
    ],
)
def test_3mf_units_are_converted_to_mm(unit, scale):
    report = run(gen.simple_3mf(gen.box((1, 2, 3)), unit=unit), "3mf")
    assert report.volume == pytest.approx(6 * scale**3, rel=RTOL)
    assert report.surface_area == pytest.approx(22 * scale**2, rel=RTOL)
    assert report.dimensions.y == pytest.approx(2 * scale, rel=RTOL)


def test_3mf_transforms_and_mirroring():
    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
    mirror[:3, 3] = (100, 0, 0)
    report = run(gen.simple_3mf(gen.box((10, 20, 30)), matrix=mirror), "3mf")
    # A mirrored part is not inside out: the loader keeps normals outwards.
    assert report.volume == pytest.approx(6000, rel=RTOL)
    assert "INVERTED_NORMALS" not in codes(report)


def test_3mf_components_across_model_parts():
    part = gen.model_xml(gen.mesh_object(gen.box((10, 10, 10)), 7), "")
    scale = np.diag([2.0, 1.0, 1.0, 1.0])
    shift = np.eye(4)
    shift[:3, 3] = (50, 0, 0)
    resources = (
        '<object id="1"><components>'
        '<component objectid="7" p:path="/3D/Objects/part.model"/>'
        f'<component objectid="7" p:path="/3D/Objects/part.model" transform="{gen.transform(shift @ scale)}"/>'
        "</components></object>"
    )
    model = gen.model_xml(resources, '<item objectid="1"/>')
    report = run(gen.threemf(model, {"3D/Objects/part.model": part}), "3mf")
    assert report.volume == pytest.approx(1000 + 2000, rel=RTOL)
    assert report.body_count == 2


def test_3mf_support_objects_are_not_printed():
    resources = gen.mesh_object(gen.box((10, 10, 10)), 1) + gen.mesh_object(
        gen.box((5, 5, 5), (20, 0, 0)), 2, kind="support"
    )
    model = gen.model_xml(resources, '<item objectid="1"/><item objectid="2"/>')
    assert run(gen.threemf(model), "3mf").volume == pytest.approx(1000, rel=RTOL)


@pytest.mark.parametrize(("unit", "scale"), [("mm", 1.0), ("inch", 25.4), ("m", 1000.0)])
def test_step_units_are_converted_to_mm(unit, scale):
    report = run(gen.step_box((1, 2, 3), unit=unit), "step")
    # STEP goes through a float32 GLB: 1e-6 is still far below print tolerances.
    assert report.volume == pytest.approx(6 * scale**3, rel=RTOL)
    assert report.surface_area == pytest.approx(22 * scale**2, rel=RTOL)
    assert report.is_watertight and report.body_count == 1


@pytest.mark.parametrize(("writer", "fmt"), [(gen.ascii_stl, "stl"), (gen.obj, "obj")])
def test_cad_rounding_noise_is_welded_shut(writer, fmt):
    # Corners off by up to 1e-13 of the size, like featuretype.STL (1e-16 mm).
    report = run(writer(gen.cracked(gen.icosphere(2, radius=20), 1e-13)), fmt)
    assert report.is_watertight and report.body_count == 1
    assert report.weld_tolerance_mm == pytest.approx(1e-9 * 40, rel=0.05)
    assert "CORNERS_JOINED" in codes(report) and "OPEN_EDGES" not in codes(report)
    assert report.printability.printable


def test_float32_noise_is_welded_shut():
    # Two float32 steps of noise: exact welding sees every edge open.
    report = run(gen.binary_stl(gen.cracked(gen.box((10, 20, 30), (100, 0, 0)), 2, np.float32)))
    assert report.is_watertight and report.body_count == 1
    assert report.volume == pytest.approx(6000, rel=1e-5)
    # 4 ulps of the largest coordinate (110 mm) in float32.
    assert report.weld_tolerance_mm == pytest.approx(4 * 2**-23 * 110, rel=1e-6)


@pytest.mark.parametrize("relative", [1e-6, 1e-4])
def test_real_gaps_stay_open(relative):
    report = run(gen.ascii_stl(gen.cracked(gen.icosphere(2, radius=20), relative)))
    assert not report.is_watertight and "OPEN_EDGES" in codes(report)
    assert "CORNERS_JOINED" not in codes(report)


def test_exact_meshes_report_the_tolerance_without_joining():
    report = run(gen.binary_stl(gen.box((10, 20, 30))))
    assert report.weld_tolerance_mm > 0 and "CORNERS_JOINED" not in codes(report)


def test_welding_survives_hash_collisions():
    corners = np.asarray(gen.icosphere(3)[0])[gen.icosphere(3)[1]]
    vertices, faces = weld(corners)
    forced_vertices, forced_faces = weld(corners, key_bits=3)  # nearly every key collides
    assert len(forced_vertices) == len(vertices) == 642
    assert np.array_equal(forced_vertices[forced_faces], corners)
    assert np.array_equal(vertices[faces], corners)


def test_welding_treats_minus_zero_as_zero():
    corners = np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], [[-0.0, 0, 0], [0, 1, 0], [0, 0, 1]]])
    vertices, faces = weld(corners)
    assert len(vertices) == 4
    assert faces[0, 0] == faces[1, 0]


def test_edge_fallback_for_huge_meshes_gives_the_same_topology(monkeypatch):
    from domain.analysis import edges

    mesh = gen.combine(gen.flipped(gen.icosphere(2), [5]), gen.without_faces(gen.box(), [0]))
    data = gen.binary_stl(mesh)
    packed = run(data)
    monkeypatch.setattr(edges, "PACKED_BITS", 8)  # as if the ids were too large to pack
    assert run(data) == packed


def test_welding_in_the_scratch_memory_gives_the_same_vertices():
    corners = np.asarray(gen.icosphere(3)[0])[gen.icosphere(3)[1]].astype(np.float32)
    for key_bits in (None, 3):  # also when nearly every key collides
        plain = weld(corners, key_bits=key_bits)
        scratch = np.full(3 * len(corners), -1, dtype=np.int64)  # garbage in it must not matter
        reused = weld(corners, key_bits=key_bits, scratch=scratch)
        assert np.array_equal(plain[0], reused[0]) and np.array_equal(plain[1], reused[1])


def test_edge_fallback_gives_the_same_pairs_as_the_packed_sort(monkeypatch):
    from domain.analysis import edges

    # Open, flipped, collapsed and non-manifold edges (three boxes sharing an edge).
    mesh = gen.combine(
        gen.with_collapsed_face(gen.flipped(gen.icosphere(2), [5])),
        gen.without_faces(gen.box(), [0]),
        gen.box((1, 1, 1), (1, 1, 0)),
        gen.box((1, 1, 1), (1, 0, 0)),
    )
    corners = np.asarray(mesh[0])[mesh[1]]
    vertices, faces = weld(corners)
    collapsed = edges.collapsed_faces(faces)
    packed = edges.edge_facts(faces, len(vertices), collapsed)
    monkeypatch.setattr(edges, "PACKED_BITS", 8)  # as if the ids were too large to pack
    scratch = np.empty(3 * len(faces), dtype=np.int64)
    fallback = edges.edge_facts(faces, len(vertices), collapsed, scratch=scratch)
    assert packed.nonmanifold_edges > 0 and packed.open_edges > 0
    for name in packed.__dataclass_fields__:
        assert np.array_equal(getattr(packed, name), getattr(fallback, name)), name


def test_a_consumed_file_is_freed_and_measured_the_same():
    data = gen.binary_stl(gen.combine(gen.icosphere(2), gen.without_faces(gen.box(), [0])))
    kept = analyse(data, "part", "stl", AnalysisOptions())
    handed_over = bytearray(data)
    assert analyse(handed_over, "part", "stl", AnalysisOptions(), consume=True) == kept
    assert len(handed_over) == 0  # its memory was released once the mesh was welded
    ascii_data = bytearray(gen.ascii_stl(gen.icosphere(2)))
    expected = analyse(bytes(ascii_data), "part", "stl", AnalysisOptions())
    assert analyse(ascii_data, "part", "stl", AnalysisOptions(), consume=True) == expected


def test_components_match_networkx():
    generator = random.Random(7)
    for _ in range(20):
        count = generator.randint(1, 300)
        edges = [(generator.randrange(count), generator.randrange(count)) for _ in range(count)]
        a = np.array([e[0] for e in edges], dtype=np.int64)
        b = np.array([e[1] for e in edges], dtype=np.int64)
        roots = component_roots(count, a, b)
        graph = nx.Graph()
        graph.add_nodes_from(range(count))
        graph.add_edges_from(edges)
        for component in nx.connected_components(graph):
            assert len({int(roots[node]) for node in component}) == 1
        assert len(set(roots.tolist())) == nx.number_connected_components(graph)


# Printability ---------------------------------------------------------------------


def test_open_edges_are_counted():
    report = run(gen.binary_stl(gen.without_faces(gen.box((10, 10, 10)), [0])))
    assert not report.is_watertight
    assert codes(report)["OPEN_EDGES"] == "error"
    assert "3 open edges around 1 hole" in issue(report, "OPEN_EDGES").message
    assert "VOLUME_UNRELIABLE" in codes(report)
    assert "THICKNESS_NOT_CHECKED" in codes(report)
    assert not report.printability.printable


def test_two_holes_are_counted_separately():
    mesh = gen.without_faces(gen.box((10, 10, 10)), [0, 2])  # triangles of two different sides
    assert "around 2 holes" in issue(run(gen.binary_stl(mesh)), "OPEN_EDGES").message


def test_non_manifold_edge():
    touching = gen.combine(gen.box((1, 1, 1)), gen.box((1, 1, 1), (1, 1, 0)))
    report = run(gen.binary_stl(touching))
    assert codes(report)["NON_MANIFOLD_EDGES"] == "error"
    assert "1 edge shared by more than two triangles" in issue(report, "NON_MANIFOLD_EDGES").message
    assert report.body_count == 1  # the shared edge connects them
    assert not report.is_watertight


def test_inconsistent_winding_is_repaired_for_the_volume():
    report = run(gen.binary_stl(gen.flipped(gen.box((10, 20, 30)), [3])))
    assert codes(report) == {"INCONSISTENT_WINDING": "warning"}
    assert "1 triangle turned the wrong way" in issue(report, "INCONSISTENT_WINDING").message
    assert report.volume == pytest.approx(6000, rel=RTOL)
    assert report.is_watertight and report.printability.printable


def test_inverted_normals():
    report = run(gen.binary_stl(gen.flipped(gen.box((10, 20, 30)))))
    assert codes(report) == {"INVERTED_NORMALS": "warning"}
    assert "The model is inside out" in issue(report, "INVERTED_NORMALS").message
    assert report.volume == pytest.approx(6000, rel=RTOL)


def test_one_inside_out_body_among_two():
    mesh = gen.combine(gen.box((10, 10, 10)), gen.flipped(gen.box((5, 5, 5), (20, 0, 0))))
    report = run(gen.binary_stl(mesh))
    assert "1 of 2 bodies is inside out" in issue(report, "INVERTED_NORMALS").message
    assert report.volume == pytest.approx(1125, rel=RTOL)


def test_cavity_is_not_mistaken_for_an_inverted_body():
    hollow = gen.combine(gen.box((10, 10, 10)), gen.flipped(gen.box((6, 6, 6), (2, 2, 2))))
    report = run(gen.binary_stl(hollow))
    assert "INVERTED_NORMALS" not in codes(report)
    assert report.volume == pytest.approx(1000 - 216, rel=RTOL)


def test_degenerate_faces():
    report = run(gen.binary_stl(gen.with_collapsed_face(gen.box((10, 10, 10)))))
    assert codes(report) == {"DEGENERATE_FACES": "warning"}
    assert report.is_watertight  # a collapsed triangle has no edges to count
    assert report.triangle_count == 13


def test_collinear_triangle_is_degenerate():
    vertices, faces = gen.box((10, 10, 10))
    vertices = np.vstack([vertices, [[0, 0, 20], [0, 0, 30], [0, 0, 40]]])
    faces = np.vstack([faces, [8, 9, 10]])
    assert "DEGENERATE_FACES" in codes(run(gen.binary_stl((vertices, faces))))


def test_empty_mesh():
    flat = (np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]), np.array([[0, 1, 2], [0, 2, 1]]))
    assert codes(run(gen.binary_stl(flat)))["EMPTY_MESH"] == "error"


def test_multiple_bodies():
    two = gen.combine(gen.box((10, 10, 10)), gen.box((10, 10, 10), (20, 0, 0)))
    report = run(gen.binary_stl(two))
    assert report.body_count == 2
    assert codes(report) == {"MULTIPLE_BODIES": "warning"}
    assert report.volume == pytest.approx(2000, rel=RTOL)


def test_non_orientable_surface():
    report = run(gen.binary_stl(gen.mobius_strip()))
    assert codes(report)["INCONSISTENT_WINDING"] == "error"


def test_overlapping_bodies_are_united():
    # Two 10 mm cubes overlapping by half: the printed solid is 1500 mm³, not 2000.
    mesh = gen.combine(gen.box((10, 10, 10)), gen.box((10, 10, 10), (5, 0, 0)))
    report = run(gen.binary_stl(mesh))
    assert report.volume == pytest.approx(1500, rel=1e-9)
    assert codes(report)["OVERLAPPING_BODIES"] == "warning"
    # Rays from one cube's faces would meet the other inside: no false thin wall.
    assert "THIN_WALLS" not in codes(report)
    assert report.printability.printable


def test_inside_out_overlapping_body_is_flipped_before_the_union():
    mesh = gen.combine(gen.box((10, 10, 10)), gen.flipped(gen.box((10, 10, 10), (5, 5, 0))))
    report = run(gen.ascii_stl(mesh))
    assert report.volume == pytest.approx(1750, rel=1e-9)
    assert {"OVERLAPPING_BODIES", "INVERTED_NORMALS"} <= set(codes(report))


def test_touching_and_nested_bodies_are_not_overlaps():
    touching = gen.combine(gen.box((10, 10, 10)), gen.box((10, 10, 10), (10, 0, 0)))
    hollow = gen.combine(gen.box((30, 30, 30)), gen.flipped(gen.box((10, 10, 10), (10, 10, 10))))
    assert run(gen.binary_stl(touching)).volume == pytest.approx(2000, rel=1e-12)
    assert "OVERLAPPING_BODIES" not in codes(run(gen.binary_stl(touching)))
    report = run(gen.binary_stl(hollow))
    assert report.volume == pytest.approx(27000 - 1000, rel=1e-12)
    assert "OVERLAPPING_BODIES" not in codes(report)


def test_a_box_inside_another_is_absorbed():
    mesh = gen.combine(gen.box((30, 30, 30)), gen.box((10, 10, 10), (10, 10, 10)))
    report = run(gen.binary_stl(mesh))
    assert report.volume == pytest.approx(27000, rel=1e-9)
    assert "OVERLAPPING_BODIES" in codes(report)


@pytest.fixture(params=["bvh", "grid"])
def ray_caster(request, monkeypatch):
    """The thin-wall checks below run with both ray casters: manifold3d's BVH (meshes
    up to BVH_MAX_TRIANGLES) and the local grid (larger meshes)."""
    from domain.analysis import thickness

    if request.param == "grid":
        monkeypatch.setattr(thickness, "BVH_MAX_TRIANGLES", -1)
    return request.param


def test_both_ray_casters_agree():
    from domain.analysis import thickness
    from domain.analysis.geometry import measure

    vertices, faces = gen.combine(gen.icosphere(4, 10), gen.box((0.5, 30, 30), (20, 0, 0)))
    geometry = measure(vertices[faces])
    args = (vertices, faces, geometry.face_area, geometry.reach, 0.8, 2000, 0)
    bvh = thickness.wall_thickness(*args)
    original = thickness.BVH_MAX_TRIANGLES
    try:
        thickness.BVH_MAX_TRIANGLES = -1
        grid = thickness.wall_thickness(*args)
    finally:
        thickness.BVH_MAX_TRIANGLES = original
    assert bvh.samples == grid.samples == 2000
    assert bvh.thin_samples == grid.thin_samples > 0
    assert bvh.minimum == pytest.approx(grid.minimum, rel=1e-9)


@pytest.mark.usefixtures("ray_caster")
def test_thin_walls():
    plate = run(gen.binary_stl(gen.box((20, 20, 0.5))))
    assert codes(plate)["THIN_WALLS"] == "error"
    assert "as thin as 0.50 mm" in issue(plate, "THIN_WALLS").message
    assert not plate.printability.printable
    assert "THIN_WALLS" not in codes(run(gen.binary_stl(gen.box((20, 20, 2)))))
    # The threshold is an option.
    assert "THIN_WALLS" not in codes(
        run(gen.binary_stl(gen.box((20, 20, 0.5))), min_wall_thickness_mm=0.4)
    )


@pytest.mark.usefixtures("ray_caster")
def test_thin_fin_on_a_block_is_found():
    fin = gen.box((0.4, 10, 10), (30, 0, 0))
    block = gen.box((20, 20, 20))
    report = run(gen.binary_stl(gen.combine(block, fin)))
    assert "THIN_WALLS" in codes(report)
    assert "as thin as 0.40 mm" in issue(report, "THIN_WALLS").message


@pytest.mark.usefixtures("ray_caster")
def test_thin_wall_detection_is_deterministic():
    data = gen.binary_stl(gen.combine(gen.icosphere(3, 10), gen.box((0.3, 30, 30), (20, 0, 0))))
    assert run(data) == run(data)


def test_build_volume():
    assert codes(run(gen.binary_stl(gen.box((300, 10, 10)))))["EXCEEDS_BUILD_VOLUME"] == "error"
    # Fits once turned: 10 x 240 x 200 in a 250 x 210 x 220 machine.
    assert "EXCEEDS_BUILD_VOLUME" not in codes(run(gen.binary_stl(gen.box((10, 240, 200)))))
    small_machine = run(gen.binary_stl(gen.box((30, 30, 30))), build_volume_mm=(20.0, 20.0, 20.0))
    assert "EXCEEDS_BUILD_VOLUME" in codes(small_machine)


def test_options_from_settings():
    from runtime.settings import Settings

    settings = Settings(min_wall_thickness_mm=1.5, build_volume_mm=(100.0, 100.0, 100.0))
    options = AnalysisOptions.from_settings(settings)
    assert options.min_wall_thickness_mm == 1.5
    assert options.build_volume_mm == (100.0, 100.0, 100.0)


def test_report_round_trips_through_a_dict():
    report = run(gen.binary_stl(gen.without_faces(gen.box(), [0])))
    assert MeshReport.from_dict(report.to_dict()) == report


# Hostile input --------------------------------------------------------------------


def _hostile():
    box = gen.box((10, 10, 10))
    many = AnalysisOptions(max_archive_entries=2)
    tight = AnalysisOptions(max_unpacked_bytes=64 * 1024)
    few = AnalysisOptions(max_triangles=10)
    cases = {
        "empty": (b"", "stl", OPTIONS, "empty"),
        "random stl": (gen.random_bytes(5000), "stl", OPTIONS, "STL"),
        "random obj": (gen.random_bytes(5000), "obj", OPTIONS, ""),
        "random ply": (b"ply\n" + gen.random_bytes(5000), "ply", OPTIONS, "PLY"),
        "random off": (b"OFF\n" + gen.random_bytes(5000), "off", OPTIONS, ""),
        "random 3mf": (b"PK\x03\x04" + gen.random_bytes(5000), "3mf", OPTIONS, "ZIP"),
        "random glb": (b"glTF" + gen.random_bytes(5000), "glb", OPTIONS, "GLB"),
        "random step": (b"ISO-10303-21;\n" + gen.random_bytes(5000), "step", OPTIONS, "STEP"),
        "png as stl": (gen.png_bytes(), "stl", OPTIONS, ""),
        "truncated binary stl": (
            gen.truncated(gen.binary_stl(gen.icosphere(2))),
            "stl",
            OPTIONS,
            "truncated",
        ),
        "truncated ascii stl": (gen.truncated(gen.ascii_stl(box)), "stl", OPTIONS, "truncated"),
        "nan": (gen.nan_stl(), "stl", OPTIONS, "NaN"),
        "huge coordinates": (gen.obj(gen.box((1e12, 1e12, 1e12))), "obj", OPTIONS, "too large"),
        "inf obj": (gen.obj(box).replace(b"v 0.0", b"v inf", 1), "obj", OPTIONS, "NaN or infinity"),
        "no triangles stl": (
            gen.binary_stl((np.zeros((0, 3)), np.zeros((0, 3), int))),
            "stl",
            OPTIONS,
            "no triangles",
        ),
        "points only obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "obj", OPTIONS, "no triangles"),
        "too many triangles": (
            gen.binary_stl(gen.icosphere(1)),
            "stl",
            few,
            "more than 10 triangles",
        ),
        "zip bomb (ratio)": (gen.zip_bomb_3mf(), "3mf", OPTIONS, "zip bomb"),
        "zip bomb (budget)": (gen.zip_bomb_3mf(200 * 1024), "3mf", tight, "unpacks to more than"),
        "zip bomb (lying sizes)": (gen.lying_zip_bomb_3mf(), "3mf", OPTIONS, "3MF"),
        "entity bomb": (gen.entity_bomb_3mf(), "3mf", OPTIONS, "DTD"),
        "path traversal": (gen.path_traversal_3mf(), "3mf", OPTIONS, "unsafe name"),
        "absolute path": (
            gen.path_traversal_3mf("/etc/cron.d/evil"),
            "3mf",
            OPTIONS,
            "unsafe name",
        ),
        "too many entries": (gen.simple_3mf(box), "3mf", many, "more than 2 files"),
        "component cycle": (gen.cyclic_3mf(), "3mf", OPTIONS, "loop"),
        "instancing bomb": (gen.instancing_bomb_3mf(), "3mf", OPTIONS, "copies"),
        "bad vertex index": (
            gen.threemf(
                gen.model_xml(gen.mesh_object((box[0], box[1] + 100), 1), '<item objectid="1"/>')
            ),
            "3mf",
            OPTIONS,
            "vertices that do not exist",
        ),
        "missing object": (
            gen.threemf(gen.model_xml("", '<item objectid="9"/>')),
            "3mf",
            OPTIONS,
            "does not define",
        ),
        "unknown unit": (gen.simple_3mf(box, unit="furlong"), "3mf", OPTIONS, "unknown unit"),
        "malformed xml": (gen.threemf("<model><resources>"), "3mf", OPTIONS, "malformed XML"),
        "zip without model": (
            gen.path_traversal_3mf("notes.txt")[:0] or _zip_without_model(),
            "3mf",
            OPTIONS,
            "no 3D model",
        ),
        "gltf with external buffer": (_gltf_external_buffer(), "gltf", OPTIONS, "upload a .glb"),
        "iges": (b"x" * 100, "iges", OPTIONS, "IGES"),
        "unknown format": (gen.binary_stl(box), "dwg", OPTIONS, "not supported"),
    }
    return [pytest.param(*case, id=name) for name, case in cases.items()]


def _zip_without_model() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
    return buffer.getvalue()


def _gltf_external_buffer() -> bytes:
    return (
        b'{"asset":{"version":"2.0"},"buffers":[{"uri":"/etc/passwd","byteLength":36}],'
        b'"bufferViews":[{"buffer":0,"byteLength":36}],'
        b'"accessors":[{"bufferView":0,"componentType":5126,"count":3,"type":"VEC3"}],'
        b'"meshes":[{"primitives":[{"attributes":{"POSITION":0}}]}],'
        b'"nodes":[{"mesh":0}],"scenes":[{"nodes":[0]}],"scene":0}'
    )


@pytest.mark.parametrize(("data", "fmt", "options", "reason"), _hostile())
def test_hostile_files_fail_with_a_readable_reason(data, fmt, options, reason):
    with pytest.raises(AnalysisFailed) as failure:
        analyse(data, f"evil.{fmt}", fmt, options)
    message = failure.value.reason
    assert reason in message
    assert "Traceback" not in message and "/" not in message.replace("NaN or infinity", "")
    assert message.endswith(".")


def test_obj_material_library_is_never_opened():
    data = b"mtllib /etc/passwd\n" + gen.obj(gen.box((10, 10, 10)))
    assert run(data, "obj").volume == pytest.approx(1000, rel=RTOL)


# Sandbox --------------------------------------------------------------------------

MB = 1024 * 1024


def test_sandbox_returns_the_same_report():
    data = gen.binary_stl(gen.box((10, 20, 30)))
    isolated = sandbox.run_isolated(data, "part.stl", "stl", OPTIONS, 30, 2048 * MB)
    assert isolated == analyse(data, "part.stl", "stl", OPTIONS)


def test_sandbox_passes_analysis_failures_through():
    with pytest.raises(AnalysisFailed, match="NaN"):
        sandbox.run_isolated(gen.nan_stl(), "part.stl", "stl", OPTIONS, 30, 2048 * MB)


def test_sandbox_timeout():
    data = gen.binary_stl(gen.icosphere(7))  # 327,680 triangles: far more than 50 ms
    with pytest.raises(AnalysisFailed, match=r"exceeded 0\.05 seconds"):
        sandbox.run_isolated(data, "part.stl", "stl", OPTIONS, 0.05, 2048 * MB)


def test_sandbox_memory_limit():
    data = gen.binary_stl(gen.icosphere(7))  # 327,680 triangles, 16 MB
    with pytest.raises(AnalysisFailed, match="memory limit of 140 MB"):
        sandbox.run_isolated(data, "part.stl", "stl", OPTIONS, 60, 140 * MB)


def test_sandbox_crash(monkeypatch):
    monkeypatch.setattr(sandbox, "PREFORK", False)
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    monkeypatch.setattr(sandbox, "child_command", lambda: [sys.executable, "-c", crash])
    with pytest.raises(AnalysisFailed, match="stopped unexpectedly"):
        sandbox.run_isolated(b"x" * 100, "part.stl", "stl", OPTIONS, 30, 2048 * MB)


def test_sandbox_child_gets_no_secrets(monkeypatch):
    monkeypatch.setattr(sandbox, "PREFORK", False)
    monkeypatch.setenv("SECRET_KEY", "do-not-leak")
    script = (
        "import os, sys; sys.stdout.write('{\"failed\": \"' + ','.join(sorted(os.environ)) + '\"}')"
    )
    monkeypatch.setattr(sandbox, "child_command", lambda: [sys.executable, "-c", script])
    with pytest.raises(AnalysisFailed) as failure:
        sandbox.run_isolated(b"x", "part.stl", "stl", OPTIONS, 30, 2048 * MB)
    assert "SECRET_KEY" not in failure.value.reason


def test_forked_child_crash_is_reported():
    # A child killed by a signal (as a native crash would) fails the analysis cleanly.
    data = gen.binary_stl(gen.icosphere(7))
    child = sandbox._start()
    try:
        os.killpg(child.pid, signal.SIGSEGV)
        output = sandbox._exchange(child, b"{}\n", data, time.monotonic() + 30)
        assert output == b""
        assert child.wait(time.monotonic() + 30) == -signal.SIGSEGV
    finally:
        child.close()


def test_prefork_process_holds_no_secret_and_no_network(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "do-not-leak")
    sandbox.prestart()
    process = sandbox._prefork._process
    proc = Path(f"/proc/{process.pid}")
    environ = (proc / "environ").read_bytes()
    assert b"SECRET_KEY" not in environ and b"do-not-leak" not in environ
    links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
    # Only its control socket to this process (an AF_UNIX pair): no TCP, no listener.
    assert sum(link.startswith("socket:") for link in links) == 1
    tcp = (proc / "net" / "tcp").read_text() + (proc / "net" / "tcp6").read_text()
    inodes = {link[8:-1] for link in links if link.startswith("socket:")}
    assert not any(inode in tcp for inode in inodes)


def test_prefork_is_restarted_when_it_dies():
    sandbox.prestart()
    os.kill(sandbox._prefork._process.pid, signal.SIGKILL)
    sandbox._prefork._process.wait()
    data = gen.binary_stl(gen.box((10, 20, 30)))
    assert sandbox.run_isolated(data, "part.stl", "stl", OPTIONS, 30, 2048 * MB).volume == 6000


# Peer comparison ------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("admesh") is None, reason="admesh is not installed (apt-get install admesh)"
)
def test_agrees_with_admesh(tmp_path):
    mesh = gen.combine(gen.icosphere(3, radius=12.5), gen.box((5, 6, 7), (20, 0, 0)))
    path = tmp_path / "peer.stl"
    path.write_bytes(gen.binary_stl(mesh))
    output = subprocess.run(
        ["admesh", str(path)], capture_output=True, check=True
    ).stdout.decode("utf-8", "replace")  # admesh echoes the 80-byte header: any bytes
    peer = _admesh_values(output)
    report = run(path.read_bytes())
    assert report.triangle_count == peer["facets"]
    assert report.body_count == peer["parts"]
    # admesh accumulates in float32.
    assert report.volume == pytest.approx(peer["volume"], rel=1e-5)
    size = (report.dimensions.x, report.dimensions.y, report.dimensions.z)
    assert size == pytest.approx(peer["size"], abs=1e-5)


def _admesh_values(output: str) -> dict:
    import re

    def number(pattern: str) -> float:
        return float(re.search(pattern, output).group(1))

    bounds = {
        axis: (number(rf"Min {axis} = *(\S+),"), number(rf"Max {axis} = *(\S+)")) for axis in "XYZ"
    }
    return {
        "facets": int(number(r"Number of facets\s*:\s*(\d+)")),
        "parts": int(number(r"Number of parts\s*:\s*(\d+)")),
        "volume": number(r"Volume\s*:\s*(\S+)"),
        "size": tuple(high - low for low, high in bounds.values()),
    }
