"""3MF: meshes in XML inside a ZIP package, with units and transforms.

The root model part is found through the package relationships. Objects are
meshes or assemblies of other objects (components, possibly in other model
parts: the production extension's `p:path`); the build lists the object
instances to print, each with a transform. The model's `unit` scales
everything to millimetres.

XML is parsed with lxml in streaming mode with entity resolution, DTD
loading, network access and "huge tree" support all off (and any DTD is
refused outright by the package reader), clearing elements as they are
consumed so memory stays proportional to the mesh arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from lxml import etree

from ..errors import AnalysisFailed
from ..options import AnalysisOptions
from .limits import check_triangle_count
from .package import Package
from .transforms import placed_corners

UNITS_MM = {
    "micron": 0.001,
    "millimeter": 1.0,
    "centimeter": 10.0,
    "inch": 25.4,
    "foot": 304.8,
    "meter": 1000.0,
}
MODEL_RELATIONSHIP = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
DEFAULT_ROOT = "/3D/3dmodel.model"
PRODUCTION_PATH = "{http://schemas.microsoft.com/3dmanufacturing/production/2015/06}path"
MAX_DEPTH = 16
# Placed copies of meshes (build items times components); real files have
# at most thousands.
MAX_INSTANCES = 100_000
# Object types that are not part of the printed model.
SKIPPED_TYPES = frozenset({"support", "other"})
BATCH = 1 << 16


@dataclass
class _Mesh:
    vertices: np.ndarray  # (V, 3) float64, model units
    triangles: np.ndarray  # (T, 3) int64


@dataclass(frozen=True)
class _Reference:
    object_id: str
    path: str  # model part holding the object
    matrix: np.ndarray  # 4x4, column vectors


@dataclass
class _Part:
    unit: float = 1.0
    meshes: dict[str, _Mesh] = field(default_factory=dict)
    assemblies: dict[str, list[_Reference]] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    build: list[_Reference] = field(default_factory=list)


def load_3mf(data: bytes, fmt: str, options: AnalysisOptions) -> np.ndarray:
    package = Package(data, options.max_unpacked_bytes, options.max_archive_entries)
    try:
        return _Assembler(package, options.max_triangles).corners()
    finally:
        package.close()


class _Assembler:
    def __init__(self, package: Package, max_triangles: int) -> None:
        self._package = package
        self._max_triangles = max_triangles
        self._parts: dict[str, _Part] = {}

    def corners(self) -> np.ndarray:
        root_path = _root_model_path(self._package)
        root = self._part(root_path)
        pieces = []
        total = 0
        for item in root.build:
            for mesh, matrix in self._instances(item, 0, ()):
                total += len(mesh.triangles)
                check_triangle_count(total, self._max_triangles)
                if len(pieces) >= MAX_INSTANCES:
                    raise AnalysisFailed(
                        f"The 3MF file places more than {MAX_INSTANCES:,} copies of its objects."
                    )
                pieces.append(placed_corners(mesh.vertices, mesh.triangles, matrix))
        if not pieces:
            return np.empty((0, 3, 3))
        corners = np.concatenate(pieces)
        corners *= root.unit
        return corners

    def _part(self, path: str) -> _Part:
        key = path.lstrip("/").lower()
        if key not in self._parts:
            self._parts[key] = _parse_model(self._package, path, self._max_triangles)
        return self._parts[key]

    def _instances(
        self, ref: _Reference, depth: int, seen: tuple[tuple[str, str], ...]
    ) -> Iterator[tuple[_Mesh, np.ndarray]]:
        """Meshes reachable from `ref`, each with its accumulated transform."""
        where = (ref.path.lower(), ref.object_id)
        if depth > MAX_DEPTH or where in seen:
            raise AnalysisFailed("The 3MF file's components are nested too deeply or in a loop.")
        part = self._part(ref.path)
        if ref.object_id in part.meshes:
            yield part.meshes[ref.object_id], ref.matrix
        elif ref.object_id in part.assemblies:
            for child in part.assemblies[ref.object_id]:
                for mesh, matrix in self._instances(child, depth + 1, (*seen, where)):
                    yield mesh, ref.matrix @ matrix
        elif ref.object_id not in part.skipped:
            raise AnalysisFailed("The 3MF file refers to an object it does not define.")


def _root_model_path(package: Package) -> str:
    if "_rels/.rels" in package:
        for _, element in _elements(package, "_rels/.rels", frozenset({"Relationship"})):
            if element.get("Type") == MODEL_RELATIONSHIP and element.get("Target"):
                return element.get("Target")
    if DEFAULT_ROOT in package:
        return DEFAULT_ROOT
    raise AnalysisFailed("This ZIP archive is not a 3MF package: it holds no 3D model.")


def _parse_model(package: Package, path: str, max_triangles: int) -> _Part:
    part = _Part()
    vertices, triangles = _Batched(float), _Batched(int, limit=max_triangles)
    references: list[_Reference] = []
    for local, element in _elements(package, path, _MODEL_ELEMENTS):
        if local == "vertex":
            vertices.add((element.get("x"), element.get("y"), element.get("z")))
        elif local == "triangle":
            triangles.add((element.get("v1"), element.get("v2"), element.get("v3")))
        elif local in ("component", "item"):
            reference = _reference(element, path)
            (references if local == "component" else part.build).append(reference)
        elif local == "object":
            _add_object(part, element, vertices.take(), triangles.take(), references)
            references = []
        elif local == "model":
            unit = element.get("unit", "millimeter")
            if unit not in UNITS_MM:
                raise AnalysisFailed("The 3MF file uses an unknown unit.")
            part.unit = UNITS_MM[unit]
    return part


_MODEL_ELEMENTS = frozenset({"vertex", "triangle", "component", "item", "object", "model"})


def _add_object(
    part: _Part,
    element: etree._Element,
    vertices: np.ndarray,
    triangles: np.ndarray,
    references: list[_Reference],
) -> None:
    object_id = element.get("id", "")
    if element.get("type", "model") in SKIPPED_TYPES:
        part.skipped.add(object_id)
    elif references:
        part.assemblies[object_id] = references
    else:
        if len(triangles) and (triangles.min() < 0 or triangles.max() >= len(vertices)):
            raise AnalysisFailed("The 3MF file refers to vertices that do not exist.")
        part.meshes[object_id] = _Mesh(vertices, triangles)


def _reference(element: etree._Element, path: str) -> _Reference:
    return _Reference(
        object_id=element.get("objectid", ""),
        path=element.get(PRODUCTION_PATH) or path,
        matrix=_matrix(element.get("transform")),
    )


def _matrix(text: str | None) -> np.ndarray:
    """3MF's 12 numbers (row-vector 4x3 matrix) as a column-vector 4x4 matrix."""
    matrix = np.eye(4)
    if text:
        try:
            values = np.array(text.split(), dtype=np.float64)
        except ValueError as exc:
            raise AnalysisFailed("The 3MF file contains a malformed transform.") from exc
        if values.shape != (12,):
            raise AnalysisFailed("The 3MF file contains a malformed transform.")
        matrix[:3, :] = values.reshape(4, 3).T
    return matrix


class _Batched:
    """Rows of numbers arriving as strings, converted to numpy in batches
    (Python lists of strings would take ten times the memory)."""

    def __init__(self, kind: type, limit: int | None = None) -> None:
        self._dtype = np.float64 if kind is float else np.int64
        self._pending: list[tuple[str | None, ...]] = []
        self._done: list[np.ndarray] = []
        self._limit = limit
        self._count = 0

    def add(self, row: tuple[str | None, ...]) -> None:
        self._pending.append(row)
        if len(self._pending) >= BATCH:
            self._count += len(self._pending)
            if self._limit is not None:
                # Refuse while parsing, before a huge mesh is in memory.
                check_triangle_count(self._count, self._limit)
            self._flush()

    def take(self) -> np.ndarray:
        self._flush()
        rows = np.concatenate(self._done) if self._done else np.empty((0, 3), self._dtype)
        self._done = []
        return rows

    def _flush(self) -> None:
        if self._pending:
            try:
                self._done.append(np.array(self._pending, dtype=self._dtype).reshape(-1, 3))
            except (TypeError, ValueError) as exc:
                raise AnalysisFailed(
                    "The 3MF file contains a malformed or missing number."
                ) from exc
            self._pending = []


def _elements(
    package: Package, path: str, wanted: frozenset[str]
) -> Iterator[tuple[str, etree._Element]]:
    """Stream (local name, element) for the wanted elements, freeing them after use."""
    reader = package.open(path)
    try:
        parser = etree.iterparse(
            reader,
            events=("end",),
            resolve_entities=False,
            load_dtd=False,
            no_network=True,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        consumed = 0
        for _, element in parser:
            tag = element.tag
            local = tag.rpartition("}")[2] if isinstance(tag, str) else ""
            if local in wanted:
                yield local, element
            if local in ("vertex", "triangle"):
                element.clear()
                consumed += 1
                # A cleared element still costs a node until it is removed:
                # drop the consumed siblings now and then.
                parent = element.getparent()
                if consumed % BATCH == 0 and parent is not None:
                    del parent[:-1]
    except etree.XMLSyntaxError as exc:
        raise AnalysisFailed("The 3MF file contains malformed XML.") from exc
    finally:
        reader.close()
