"""Meshes and hostile files built in code, for the analysis and format tests.

Meshes are (vertices, faces) pairs with outward-facing (counter-clockwise)
triangles; writers turn them into the bytes of each file format.
"""

from __future__ import annotations

import io
import itertools
import math
import struct
import zipfile

import numpy as np

Mesh = tuple[np.ndarray, np.ndarray]

# Corners of the unit cube by bit pattern (x, y, z), and its 12 triangles.
_CUBE_VERTICES = np.array(list(itertools.product((0, 1), repeat=3)), dtype=np.float64)
_CUBE_FACES = np.array(
    [
        [0, 2, 6], [0, 6, 4],  # z = 0 is not a face here: x = 0 / x = 1 first
        [1, 5, 7], [1, 7, 3],
        [0, 4, 5], [0, 5, 1],
        [2, 3, 7], [2, 7, 6],
        [0, 1, 3], [0, 3, 2],
        [4, 6, 7], [4, 7, 5],
    ]
)  # fmt: skip


def box(size=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Mesh:
    vertices = _CUBE_VERTICES * np.asarray(size, dtype=np.float64) + np.asarray(origin)
    faces = _CUBE_FACES.copy()
    # Make every triangle face outwards (normal along the outward direction).
    centre = vertices.mean(axis=0)
    for row in faces:
        a, b, c = vertices[row]
        if np.dot(np.cross(b - a, c - a), a - centre) < 0:
            row[[1, 2]] = row[[2, 1]]
    return vertices, faces


def octahedron(radius: float = 1.0, origin=(0.0, 0.0, 0.0)) -> Mesh:
    """Volume 4/3 r³, area 4 √3 r²."""
    vertices = np.array(
        [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64
    )
    faces = []
    for x, y, z in itertools.product((0, 1), (2, 3), (4, 5)):
        a, b, c = vertices[[x, y, z]]
        faces.append([x, y, z] if np.dot(np.cross(b - a, c - a), a) > 0 else [x, z, y])
    return vertices * radius + np.asarray(origin), np.array(faces)


def icosphere(subdivisions: int = 2, radius: float = 10.0) -> Mesh:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(sphere.vertices), np.asarray(sphere.faces)


def combine(*meshes: Mesh) -> Mesh:
    vertices, faces, offset = [], [], 0
    for v, f in meshes:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(faces)


def flipped(mesh: Mesh, which=None) -> Mesh:
    """Reverse the winding of the given faces (all when None)."""
    vertices, faces = mesh
    faces = faces.copy()
    rows = slice(None) if which is None else which
    faces[rows] = faces[rows][:, ::-1]
    return vertices, faces


def without_faces(mesh: Mesh, which) -> Mesh:
    vertices, faces = mesh
    return vertices, np.delete(faces, which, axis=0)


def with_collapsed_face(mesh: Mesh) -> Mesh:
    vertices, faces = mesh
    return vertices, np.vstack([faces, [faces[0, 0], faces[0, 0], faces[0, 1]]])


def cracked(mesh: Mesh, relative: float, dtype=np.float64, seed: int = 3) -> Mesh:
    """Each triangle with its own corners, moved by up to `relative` of the
    largest extent, as a CAD exporter rounding every face on its own does.
    With dtype float32, the noise is in float32 units in the last place."""
    vertices, faces = mesh
    corners = np.asarray(vertices, dtype=np.float64)[faces].reshape(-1, 3)
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        stored = corners.astype(np.float32)
        steps = rng.integers(-relative, relative + 1, stored.shape).astype(np.float32)
        moved = stored + steps * np.spacing(np.abs(stored) + np.float32(1e-30))
        corners = moved.astype(np.float64)
    else:
        extent = float(np.ptp(vertices, axis=0).max())
        corners = corners + rng.uniform(-1, 1, corners.shape) * relative * extent
    return corners, np.arange(len(corners)).reshape(-1, 3)


def mobius_strip(segments: int = 24, width: float = 4.0, radius: float = 20.0) -> Mesh:
    """A one-sided (non-orientable) open surface."""
    vertices = []
    for i in range(segments):
        angle = 2 * math.pi * i / segments
        twist = angle / 2
        for side in (-1, 1):
            r = radius + side * width / 2 * math.cos(twist)
            vertices.append(
                [r * math.cos(angle), r * math.sin(angle), side * width / 2 * math.sin(twist)]
            )
    faces = []
    for i in range(segments - 1):
        a, b, c, d = 2 * i, 2 * i + 1, 2 * i + 2, 2 * i + 3
        faces += [[a, c, b], [b, c, d]]
    last = 2 * (segments - 1)
    # The ends meet with the sides swapped: that is the half twist.
    faces += [[last, 1, last + 1], [last + 1, 1, 0]]
    return np.array(vertices), np.array(faces)


def torus(
    major_sections: int = 64, minor_sections: int = 40, major: float = 30.0, minor: float = 10.0
) -> Mesh:
    """A closed torus around Z of 2 x major_sections x minor_sections triangles, in numpy.

    (64, 40): 5,120; (1024, 640): 1,310,720; (2048, 1280): 5,242,880 triangles.
    """
    u = np.linspace(0, 2 * np.pi, major_sections, endpoint=False)[:, None]
    v = np.linspace(0, 2 * np.pi, minor_sections, endpoint=False)[None, :]
    ring = major + minor * np.cos(v)
    vertices = np.stack(
        np.broadcast_arrays(ring * np.cos(u), ring * np.sin(u), minor * np.sin(v)), axis=-1
    ).reshape(-1, 3)
    i = np.arange(major_sections)[:, None]
    j = np.arange(minor_sections)[None, :]
    a = i * minor_sections + j
    b = ((i + 1) % major_sections) * minor_sections + j
    c = ((i + 1) % major_sections) * minor_sections + (j + 1) % minor_sections
    d = i * minor_sections + (j + 1) % minor_sections
    faces = np.stack([np.stack([a, b, c], -1), np.stack([a, c, d], -1)], axis=2).reshape(-1, 3)
    return vertices, faces


# Writers ---------------------------------------------------------------------


def binary_stl(mesh: Mesh, header: bytes = b"meshes_gen binary STL") -> bytes:
    vertices, faces = mesh
    corners = np.asarray(vertices, dtype=np.float64)[faces]
    records = np.zeros(len(faces), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    records["v"] = corners
    return header.ljust(80, b" ")[:80] + struct.pack("<I", len(faces)) + records.tobytes()


def ascii_stl(mesh: Mesh, name: str = "part") -> bytes:
    vertices, faces = mesh
    lines = [f"solid {name}"]
    for face in faces:
        a, b, c = vertices[face]
        n = np.cross(b - a, c - a)
        n = n / (np.linalg.norm(n) or 1.0)
        lines += [f"  facet normal {n[0]:e} {n[1]:e} {n[2]:e}", "    outer loop"]
        lines += [
            f"      vertex {x!r} {y!r} {z!r}" for x, y, z in (a.tolist(), b.tolist(), c.tolist())
        ]
        lines += ["    endloop", "  endfacet"]
    lines.append(f"endsolid {name}")
    return ("\n".join(lines) + "\n").encode()


def obj(mesh: Mesh) -> bytes:
    vertices, faces = mesh
    lines = ["# meshes_gen", "o part"]
    lines += [f"v {x!r} {y!r} {z!r}" for x, y, z in vertices.tolist()]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces.tolist()]
    return ("\n".join(lines) + "\n").encode()


def ply(mesh: Mesh) -> bytes:
    vertices, faces = mesh
    header = (
        "ply\nformat ascii 1.0\n"
        f"element vertex {len(vertices)}\nproperty double x\nproperty double y\nproperty double z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    body = [f"{x!r} {y!r} {z!r}" for x, y, z in vertices.tolist()]
    body += [f"3 {a} {b} {c}" for a, b, c in faces.tolist()]
    return (header + "\n".join(body) + "\n").encode()


def off(mesh: Mesh) -> bytes:
    vertices, faces = mesh
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [f"{x!r} {y!r} {z!r}" for x, y, z in vertices.tolist()]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces.tolist()]
    return ("\n".join(lines) + "\n").encode()


def glb(mesh: Mesh, metres_per_unit: float = 1.0) -> bytes:
    import trimesh

    vertices, faces = mesh
    return trimesh.Trimesh(vertices * metres_per_unit, faces, process=False).export(file_type="glb")


CORE_NS = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
PROD_NS = "http://schemas.microsoft.com/3dmanufacturing/production/2015/06"
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
    'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
    "</Relationships>"
)


def mesh_object(mesh: Mesh, object_id: int, kind: str = "model") -> str:
    vertices, faces = mesh
    points = "".join(f'<vertex x="{x!r}" y="{y!r}" z="{z!r}"/>' for x, y, z in vertices.tolist())
    triangles = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in faces.tolist())
    return (
        f'<object id="{object_id}" type="{kind}"><mesh><vertices>{points}</vertices>'
        f"<triangles>{triangles}</triangles></mesh></object>"
    )


def model_xml(resources: str, build: str, unit: str = "millimeter", prolog: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{prolog}'
        f'<model unit="{unit}" xml:lang="en-US" xmlns="{CORE_NS}" xmlns:p="{PROD_NS}">'
        f"<resources>{resources}</resources><build>{build}</build></model>"
    )


def transform(matrix: np.ndarray) -> str:
    """3MF transform attribute of a 4x4 column-vector matrix."""
    rows = np.asarray(matrix, dtype=float)[:3, :].T  # 4 rows of 3
    return " ".join(repr(float(v)) for v in rows.ravel())


def threemf(model: str, extra: dict[str, bytes | str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        archive.writestr("3D/3dmodel.model", model)
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return buffer.getvalue()


def simple_3mf(mesh: Mesh, unit: str = "millimeter", matrix: np.ndarray | None = None) -> bytes:
    item = '<item objectid="1"'
    if matrix is not None:
        item += f' transform="{transform(matrix)}"'
    return threemf(model_xml(mesh_object(mesh, 1), item + "/>", unit))


# Hostile files ----------------------------------------------------------------


def zip_bomb_3mf(unpacked: int = 20 * 1024 * 1024) -> bytes:
    """A model part of whitespace that deflates about 1000 to 1."""
    model = model_xml(mesh_object(box(), 1), '<item objectid="1"/>')
    padded = model.replace("<resources>", "<resources>" + " " * unpacked, 1)
    return threemf(padded)


def lying_zip_bomb_3mf() -> bytes:
    """The model part declares a tiny uncompressed size but holds far more."""
    data = bytearray(zip_bomb_3mf(4 * 1024 * 1024))
    name = b"3D/3dmodel.model"
    local = data.find(b"PK\x03\x04" + data[4:4])  # first local header
    while local >= 0:
        if data[local + 30 : local + 30 + len(name)] == name:
            struct.pack_into("<I", data, local + 22, 1000)
        local = data.find(b"PK\x03\x04", local + 4)
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        if data[central + 46 : central + 46 + len(name)] == name:
            struct.pack_into("<I", data, central + 24, 1000)
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(data)


def entity_bomb_3mf() -> bytes:
    entities = ['<!ENTITY e0 "lol">'] + [
        f'<!ENTITY e{i} "{("&e" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    ]
    prolog = "<!DOCTYPE model [" + "".join(entities) + "]>"
    model = model_xml(mesh_object(box(), 1), '<item objectid="1"/>', prolog=prolog)
    return threemf(model.replace('xml:lang="en-US"', 'xml:lang="&e9;"'))


def path_traversal_3mf(name: str = "../../evil.txt") -> bytes:
    return threemf(model_xml(mesh_object(box(), 1), '<item objectid="1"/>'), {name: "x"})


def cyclic_3mf() -> bytes:
    resources = (
        '<object id="1"><components><component objectid="2"/></components></object>'
        '<object id="2"><components><component objectid="1"/></components></object>'
    )
    return threemf(model_xml(resources, '<item objectid="1"/>'))


def instancing_bomb_3mf(levels: int = 12, fan_out: int = 10) -> bytes:
    """Components that each use the level below ten times: 10^12 empty meshes."""
    resources = '<object id="0"><mesh><vertices/><triangles/></mesh></object>'
    for level in range(1, levels + 1):
        parts = f'<component objectid="{level - 1}"/>' * fan_out
        resources += f'<object id="{level}"><components>{parts}</components></object>'
    return threemf(model_xml(resources, f'<item objectid="{levels}"/>'))


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def random_bytes(size: int = 4096, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def png_bytes() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + random_bytes(500)


def nan_stl() -> bytes:
    vertices, faces = box()
    vertices = vertices.copy()
    vertices[3, 1] = np.nan
    return binary_stl((vertices, faces))


# STEP --------------------------------------------------------------------------


def step_box(size=(10.0, 20.0, 30.0), unit: str = "mm") -> bytes:
    """An AP214 STEP file of an axis-aligned box, in 'mm', 'inch' or 'm'."""
    lines: list[str] = []
    counter = itertools.count(100)

    def add(text: str) -> str:
        ref = f"#{next(counter)}"
        lines.append(f"{ref}={text};")
        return ref

    def number(v: float) -> str:
        return f"{float(v):.6E}"

    def point(p) -> str:
        return add(f"CARTESIAN_POINT('',({','.join(number(c) for c in p)}))")

    def direction(d) -> str:
        return add(f"DIRECTION('',({','.join(number(c) for c in d)}))")

    corner = {}
    for bits in itertools.product((0, 1), repeat=3):
        p = tuple(bits[k] * size[k] for k in range(3))
        corner[bits] = (p, add(f"VERTEX_POINT('',{point(p)})"))
    sides = [
        ((0, 0, -1), [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)]),
        ((0, 0, 1), [(0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)]),
        ((0, -1, 0), [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)]),
        ((0, 1, 0), [(0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0)]),
        ((-1, 0, 0), [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)]),
        ((1, 0, 0), [(1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)]),
    ]
    edges: dict = {}

    def edge(a, b) -> tuple[str, str]:
        key = tuple(sorted((a, b)))
        if key not in edges:
            (pa, va), (pb, vb) = corner[key[0]], corner[key[1]]
            delta = [pb[k] - pa[k] for k in range(3)]
            length = math.sqrt(sum(d * d for d in delta))
            vector = add(f"VECTOR('',{direction([d / length for d in delta])},{number(length)})")
            line = add(f"LINE('',{point(pa)},{vector})")
            edges[key] = add(f"EDGE_CURVE('',{va},{vb},{line},.T.)")
        return edges[key], ".T." if (a, b) == key else ".F."

    faces = []
    for normal, loop in sides:
        oriented = []
        for a, b in zip(loop, loop[1:] + loop[:1], strict=True):
            ref, sense = edge(a, b)
            oriented.append(add(f"ORIENTED_EDGE('',*,*,{ref},{sense})"))
        edge_loop = add("EDGE_LOOP('',(" + ",".join(oriented) + "))")
        bound = add(f"FACE_OUTER_BOUND('',{edge_loop},.T.)")
        reference = [1, 0, 0] if normal[0] == 0 else [0, 1, 0]
        origin = point(corner[loop[0]][0])
        axes = add(f"AXIS2_PLACEMENT_3D('',{origin},{direction(normal)},{direction(reference)})")
        plane = add(f"PLANE('',{axes})")
        faces.append(add(f"ADVANCED_FACE('',({bound}),{plane},.T.)"))
    shell = add(f"CLOSED_SHELL('',({','.join(faces)}))")
    solid = add(f"MANIFOLD_SOLID_BREP('box',{shell})")
    units = {
        "mm": ["#21=(LENGTH_UNIT() NAMED_UNIT(*) SI_UNIT(.MILLI.,.METRE.));"],
        "m": ["#21=(LENGTH_UNIT() NAMED_UNIT(*) SI_UNIT($,.METRE.));"],
        "inch": [
            "#21=(CONVERSION_BASED_UNIT('INCH',#26) LENGTH_UNIT() NAMED_UNIT(#25));",
            "#25=DIMENSIONAL_EXPONENTS(1.,0.,0.,0.,0.,0.,0.);",
            "#26=LENGTH_MEASURE_WITH_UNIT(LENGTH_MEASURE(25.4),#27);",
            "#27=(LENGTH_UNIT() NAMED_UNIT(*) SI_UNIT(.MILLI.,.METRE.));",
        ],
    }[unit]
    head = [
        "#1=APPLICATION_CONTEXT('automotive design');",
        "#2=APPLICATION_PROTOCOL_DEFINITION('international standard','automotive_design',2000,#1);",
        "#3=PRODUCT_CONTEXT('',#1,'mechanical');",
        "#4=PRODUCT('box','box','',(#3));",
        "#5=PRODUCT_DEFINITION_FORMATION('','',#4);",
        "#6=PRODUCT_DEFINITION_CONTEXT('part definition',#1,'design');",
        "#7=PRODUCT_DEFINITION('design','',#5,#6);",
        "#8=PRODUCT_DEFINITION_SHAPE('','',#7);",
        "#9=SHAPE_DEFINITION_REPRESENTATION(#8,#10);",
        f"#10=ADVANCED_BREP_SHAPE_REPRESENTATION('',({solid}),#20);",
        "#20=(GEOMETRIC_REPRESENTATION_CONTEXT(3) GLOBAL_UNCERTAINTY_ASSIGNED_CONTEXT((#24)) "
        "GLOBAL_UNIT_ASSIGNED_CONTEXT((#21,#22,#23)) REPRESENTATION_CONTEXT('',''));",
        "#22=(NAMED_UNIT(*) PLANE_ANGLE_UNIT() SI_UNIT($,.RADIAN.));",
        "#23=(NAMED_UNIT(*) SI_UNIT($,.STERADIAN.) SOLID_ANGLE_UNIT());",
        "#24=UNCERTAINTY_MEASURE_WITH_UNIT(LENGTH_MEASURE(1.E-07),#21,'distance_accuracy_value','');",
        *units,
    ]
    text = [
        "ISO-10303-21;",
        "HEADER;",
        "FILE_DESCRIPTION((''),'2;1');",
        "FILE_NAME('box.step','2024-01-01T00:00:00',(''),(''),'','','');",
        "FILE_SCHEMA(('AUTOMOTIVE_DESIGN { 1 0 10303 214 1 1 1 1 }'));",
        "ENDSEC;",
        "DATA;",
        *head,
        *lines,
        "ENDSEC;",
        "END-ISO-10303-21;",
    ]
    return ("\n".join(text) + "\n").encode()


# STEP parts from OpenCASCADE (gmsh's OCC kernel), with their exact volumes --------------

STEP_UNITS_MM = {"mm": 1.0, "inch": 25.4, "m": 1000.0}
_INCH_ENTITIES = (
    "#9001=DIMENSIONAL_EXPONENTS(1.,0.,0.,0.,0.,0.,0.);\n"
    "#9002=LENGTH_MEASURE_WITH_UNIT(LENGTH_MEASURE(25.4),#9003);\n"
    "#9003=(LENGTH_UNIT() NAMED_UNIT(*) SI_UNIT(.MILLI.,.METRE.));\n"
)


STEP_PARTS = ("block_with_hole", "cylinder", "sphere", "assembly")


def step_part(kind: str, unit: str = "mm") -> tuple[bytes, float]:
    """A STEP file of an analytic part written by OpenCASCADE, and its exact volume (mm³).

    Sizes are about 30 mm whatever the unit: the numbers in the file are the
    millimetre sizes divided by the unit's length, and the file declares that
    unit. Needs `gmsh` (test-only dependency); generated in a temporary directory.
    """
    import os
    import tempfile

    import gmsh

    k = 1.0 / STEP_UNITS_MM[unit]
    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.model.add(kind)
        occ = gmsh.model.occ
        if kind == "block_with_hole":
            box = occ.addBox(0, 0, 0, 30 * k, 20 * k, 10 * k)
            hole = occ.addCylinder(15 * k, 10 * k, 0, 0, 0, 10 * k, 4 * k)
            occ.cut([(3, box)], [(3, hole)])
            exact = 30 * 20 * 10 - math.pi * 4**2 * 10
        elif kind == "cylinder":
            occ.addCylinder(0, 0, 0, 0, 0, 25 * k, 8 * k)
            exact = math.pi * 8**2 * 25
        elif kind == "sphere":
            occ.addSphere(0, 0, 0, 12 * k)
            exact = 4 / 3 * math.pi * 12**3
        elif kind == "assembly":
            occ.addBox(0, 0, 0, 10 * k, 10 * k, 10 * k)
            occ.addSphere(30 * k, 5 * k, 5 * k, 6 * k)
            occ.addCylinder(60 * k, 5 * k, 0, 0, 0, 20 * k, 5 * k)
            exact = 1000 + 4 / 3 * math.pi * 6**3 + math.pi * 5**2 * 20
        else:
            raise ValueError(kind)
        occ.synchronize()
        with tempfile.TemporaryDirectory(prefix="meshes-gen-") as folder:
            path = os.path.join(folder, f"{kind}.step")
            gmsh.write(path)
            with open(path) as written:
                text = written.read()
    finally:
        gmsh.finalize()
    return _declare_unit(text, unit).encode(), exact


def _declare_unit(text: str, unit: str) -> str:
    """Declare `unit` in every representation context (one per solid)."""
    si_mm = "SI_UNIT(.MILLI.,.METRE.)"
    lines = [row for row in text.splitlines() if "LENGTH_UNIT()" in row and si_mm in row]
    for line in lines:
        if unit == "m":
            text = text.replace(line, line.replace(si_mm, "SI_UNIT($,.METRE.)"))
        elif unit == "inch":
            ref = line.split("=", 1)[0].strip()
            inch = f"{ref}=(CONVERSION_BASED_UNIT('INCH',#9002) LENGTH_UNIT() NAMED_UNIT(#9001));"
            text = text.replace(line, inch)
    if unit == "inch":
        head, tail = text.rsplit("ENDSEC;", 1)
        text = head + _INCH_ENTITIES + "ENDSEC;" + tail
    return text
