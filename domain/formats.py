"""The one registry of 3D formats, and recognising an upload's format from its
first bytes while it streams in.

Adding a format means adding one `Format` to `REGISTRY`: its name, label,
file extensions, how its content is recognised, which loader reads it, the
unit its numbers are in and their stored precision. The upload check, the
analysis loaders and the messages all read it from here.

The content decides, not the name: a renamed PNG is refused, a binary STL
called `part.bin` is accepted. The extension only breaks ties the content
cannot (a ZIP that is not obviously 3MF, a JSON file, a tiny STL).

Binary STL has no magic number (an 80-byte free header, then a uint32
triangle count), so it is recognised by its first triangles holding
plausible coordinates, and confirmed by `check_complete` once the total size
is known: 84 + 50 * count bytes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from .errors import UnsupportedFormat

SNIFF_BYTES = 4096
# Bytes a binary STL may carry after its last triangle (fewer than a record).
STL_TRAILING_SLACK = 49
# Binary STL coordinates beyond this (mm) are taken for random bytes.
PLAUSIBLE_COORDINATE = 1e9


@dataclass(frozen=True)
class Format:
    name: str  # stored in ModelMetadata.format
    label: str  # for people
    extensions: tuple[str, ...]
    # "module:function" under domain.analysis.loaders, imported when first used
    # (the STL path must not pay for trimesh or OpenCASCADE):
    # function(data, name, options) -> (n, 3, 3) corners in the file's unit.
    loader: str
    # Millimetres per unit of the file's numbers; None: the file declares its
    # unit and the loader converts (3MF, STEP).
    unit_mm: float | None
    # Coordinates stored as float32 (binary STL, glTF buffers): the welding
    # tolerance allows for their rounding (domain.analysis.cracks).
    single_precision: bool = False
    # Set for formats recognised only to be refused with this reason.
    refused: str | None = None


REGISTRY: tuple[Format, ...] = (
    Format("stl", "STL", ("stl",), "stl:load_stl", 1.0),
    Format("obj", "OBJ", ("obj",), "scene:load_scene", 1.0),
    Format("ply", "PLY", ("ply",), "scene:load_scene", 1.0),
    Format("off", "OFF", ("off",), "scene:load_scene", 1.0),
    Format("3mf", "3MF", ("3mf",), "threemf:load_3mf", None),
    Format("glb", "GLB", ("glb",), "scene:load_scene", 1000.0, single_precision=True),
    Format("gltf", "glTF", ("gltf",), "scene:load_scene", 1000.0, single_precision=True),
    Format("step", "STEP", ("step", "stp"), "step:load_step", None),
    Format(
        "iges",
        "IGES",
        ("iges", "igs"),
        "",
        None,
        refused="IGES files are not supported (their faces are rarely sewn into closed "
        "solids): please export STEP, 3MF or STL.",
    ),
)
FORMATS: dict[str, Format] = {f.name: f for f in REGISTRY}
_LABELS = [f.label for f in REGISTRY if not f.refused]
SUPPORTED_TEXT = ", ".join(_LABELS[:-1]) + " or " + _LABELS[-1]
_BY_EXTENSION = {ext: f.name for f in REGISTRY for ext in f.extensions}

_BOM = b"\xef\xbb\xbf"
_OTHER_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ", "an xz archive"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a program"),
    (b"\xd0\xcf\x11\xe0", "an OLE document (e.g. a native SolidWorks or Office file)"),
    (b"Kaydara FBX", "an FBX file"),
    (b"BLENDER", "a Blender file"),
    (b"<", "an XML or HTML document"),
)
_OBJ_KEYWORDS = frozenset(
    b"v vt vn vp f l p o g s mg mtllib usemtl cstype deg bmat step curv curv2 surf "
    b"parm trim hole scrv sp end con lod maplib usemap shadow_obj trace_obj".split()
)
# The counts may follow on the same line ("OFF8 6 12", "\tOFF 8 6 12").
_OFF_HEADER = re.compile(rb"^(ST)?C?N?4?n?OFF(?![A-Za-z_])")
_IGES_START = re.compile(rb"^.{72}S[ 0-9]{7}$")


def sniff_format(head: bytes, file_name: str) -> str:
    """Return the format of a file from its first SNIFF_BYTES bytes.

    Raises UnsupportedFormat with a message fit for the uploader.
    """
    if not head:
        raise UnsupportedFormat("The file is empty.")
    ext = _extension(file_name)
    text = head.removeprefix(_BOM).lstrip()
    if head.startswith(b"glTF"):
        return "glb"
    if head.startswith(b"PK\x03\x04"):
        return _zip(head, ext)
    if text.startswith(b"ISO-10303-21"):
        return "step"
    if _is_iges(head):
        raise UnsupportedFormat(FORMATS["iges"].refused)
    if re.match(rb"ply\r?\n", text):
        return "ply"
    if looks_like_ascii_stl(head):
        return "stl"
    fmt = _text_format(head, text, ext)
    if fmt is None and _plausible_binary_stl(head, ext):
        fmt = "stl"
    if fmt is None:
        raise UnsupportedFormat(_not_a_model(text))
    return fmt


def check_complete(fmt: str, head: bytes, total_size: int) -> None:
    """Refuse an upload whose size contradicts its header (truncated, padded)."""
    if total_size <= 0:
        raise UnsupportedFormat("The file is empty.")
    if fmt == "stl" and not looks_like_ascii_stl(head):
        _check_binary_stl(head, total_size)
    elif fmt == "glb" and len(head) >= 12:
        declared = struct.unpack_from("<I", head, 8)[0]
        if total_size < declared:
            raise UnsupportedFormat(
                f"Truncated GLB: its header announces {declared} bytes, the file has {total_size}."
            )


def looks_like_ascii_stl(head: bytes) -> bool:
    """ASCII STL: 'solid', then facets, and no binary bytes.

    Many binary STLs also start with 'solid' in their free header; their
    triangle data contains NUL bytes (and no 'facet' keyword).
    """
    text = head.removeprefix(_BOM).lstrip()
    if text[:5].lower() != b"solid" or b"\x00" in head:
        return False
    lowered = text.lower()
    return b"facet" in lowered or b"endsolid" in lowered or len(head) < SNIFF_BYTES


def binary_stl_size_ok(head: bytes, total_size: int) -> bool:
    if len(head) < 84:
        return False
    expected = 84 + 50 * struct.unpack_from("<I", head, 80)[0]
    return expected <= total_size <= expected + STL_TRAILING_SLACK


def _check_binary_stl(head: bytes, total_size: int) -> None:
    if len(head) < 84 or total_size < 84:
        raise UnsupportedFormat("Truncated binary STL: the file is shorter than its header.")
    if binary_stl_size_ok(head, total_size):
        return
    count = struct.unpack_from("<I", head, 80)[0]
    expected = 84 + 50 * count
    problem = "truncated binary STL" if total_size < expected else "damaged binary STL"
    raise UnsupportedFormat(
        f"{problem[0].upper()}{problem[1:]}: the header announces {count} triangles "
        f"({expected} bytes) but the file has {total_size} bytes."
    )


def _extension(file_name: str) -> str:
    ext = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    return _BY_EXTENSION.get(ext, ext)


def _zip(head: bytes, ext: str) -> str:
    # The first entry's name sits in the first local file header.
    name_length = struct.unpack_from("<H", head, 26)[0] if len(head) >= 30 else 0
    first = head[30 : 30 + name_length]
    if (
        ext == "3mf"
        or first in (b"[Content_Types].xml", b"_rels/.rels")
        or first.startswith(b"3D/")
    ):
        return "3mf"
    raise UnsupportedFormat(f"This ZIP archive is not a 3MF package ({SUPPORTED_TEXT}).")


def _is_iges(head: bytes) -> bool:
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    return bool(_IGES_START.match(first_line))


def _text_format(head: bytes, text: bytes, ext: str) -> str | None:
    if b"\x00" in head:
        return None
    if _OFF_HEADER.match(text):
        return "off"
    if text.startswith(b"{"):
        if b'"asset"' in head or ext == "gltf":
            return "gltf"
        raise UnsupportedFormat(f"This JSON file is not glTF ({SUPPORTED_TEXT}).")
    return "obj" if _is_obj(text, ext) else None


def _not_a_model(text: bytes) -> str:
    # Checked last: a binary STL's free header may start with anything.
    if text.startswith(b"<") and b"<amf" in text.lower():
        return f"AMF files are not supported: please export {SUPPORTED_TEXT}."
    for magic, kind in _OTHER_MAGIC:
        if text.startswith(magic):
            return f"This file is {kind}, not a 3D model ({SUPPORTED_TEXT})."
    return f"This file is not a supported 3D model ({SUPPORTED_TEXT})."


def _is_obj(text: bytes, ext: str) -> bool:
    lines = text.splitlines()
    if len(text) >= SNIFF_BYTES - len(_BOM) and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut off
    seen_keyword = False
    for line in lines:
        words = line.split()
        if not words or words[0].startswith(b"#"):
            continue
        if words[0] not in _OBJ_KEYWORDS:
            return False
        seen_keyword = True
    return seen_keyword or ext == "obj"


def _plausible_binary_stl(head: bytes, ext: str) -> bool:
    if len(head) < 84:
        return False
    facets = min((len(head) - 84) // 50, struct.unpack_from("<I", head, 80)[0])
    if facets == 0:
        # Nothing to judge by but the header: only trust the name.
        return ext == "stl"
    for index in range(facets):
        values = struct.unpack_from("<12f", head, 84 + 50 * index)
        if not all(abs(v) < PLAUSIBLE_COORDINATE for v in values):  # also False for NaN
            return False
    return True
