"""Content sniffing at upload time (domain/formats.py)."""

from __future__ import annotations

import struct

import pytest

from domain.errors import UnsupportedFormat
from domain.formats import SNIFF_BYTES, check_complete, sniff_format
from tests import meshes_gen as gen


def sniff(data: bytes, name: str) -> str:
    return sniff_format(data[:SNIFF_BYTES], name)


def test_binary_stl_is_recognised_without_extension():
    data = gen.binary_stl(gen.box((10, 10, 10)))
    assert sniff(data, "part.bin") == "stl"
    check_complete("stl", data[:SNIFF_BYTES], len(data))


def test_binary_stl_whose_header_starts_with_solid_is_binary():
    data = gen.binary_stl(gen.icosphere(2), header=b"solid exported by some CAD tool")
    assert sniff(data, "part.stl") == "stl"
    check_complete("stl", data[:SNIFF_BYTES], len(data))


def test_ascii_stl():
    data = gen.ascii_stl(gen.box())
    assert sniff(data, "part.txt") == "stl"
    check_complete("stl", data[:SNIFF_BYTES], len(data))


@pytest.mark.parametrize(
    ("writer", "name", "expected"),
    [
        (gen.obj, "part.obj", "obj"),
        (gen.ply, "part.ply", "ply"),
        (gen.off, "part.off", "off"),
        (gen.simple_3mf, "part.3mf", "3mf"),
        (gen.glb, "part.glb", "glb"),
    ],
)
def test_mesh_formats(writer, name, expected):
    data = writer(gen.box())
    assert sniff(data, name) == expected
    assert sniff(data, "renamed.stl") == expected  # content wins over the name
    check_complete(expected, data[:SNIFF_BYTES], len(data))


def test_step_by_content_and_stp_extension():
    data = gen.step_box()
    assert sniff(data, "part.stp") == "step"
    assert sniff(data, "part") == "step"


def test_gltf_json():
    assert sniff(b'{"asset": {"version": "2.0"}, "meshes": []}', "scene.gltf") == "gltf"
    assert sniff(b'{\n  "asset": {"version": "2.0"}}', "scene.json") == "gltf"
    with pytest.raises(UnsupportedFormat, match="JSON"):
        sniff(b'{"hello": "world"}', "data.json")


def test_3mf_zip_without_3mf_extension_is_known_by_its_first_entry():
    assert sniff(gen.simple_3mf(gen.box()), "upload.zip") == "3mf"


def test_other_zip_is_refused():
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(UnsupportedFormat, match="not a 3MF"):
        sniff(buffer.getvalue(), "parts.zip")


def test_iges_is_refused_with_advice():
    line = "IGES file written by a CAD tool".ljust(72) + "S      1\n"
    with pytest.raises(UnsupportedFormat, match=r"IGES.*STEP"):
        sniff(line.encode() * 3, "part.igs")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (gen.png_bytes(), "PNG image"),
        (b"%PDF-1.7\n" + gen.random_bytes(300), "PDF"),
        (gen.random_bytes(4096), "not a supported 3D model"),
        (b"hello world, this is just some text\n" * 10, "not a supported 3D model"),
        (b"<html><body>nope</body></html>", "XML or HTML"),
        (b'<?xml version="1.0"?>\n<amf unit="millimeter"><object id="0"/></amf>', "AMF"),
    ],
)
def test_non_models_are_refused_even_when_named_stl(data, message):
    with pytest.raises(UnsupportedFormat, match=message):
        sniff(data, "part.stl")


def test_empty_file_is_refused():
    with pytest.raises(UnsupportedFormat, match="empty"):
        sniff(b"", "part.stl")
    with pytest.raises(UnsupportedFormat, match="empty"):
        check_complete("stl", b"", 0)


def test_truncated_binary_stl_is_refused_once_the_size_is_known():
    data = gen.binary_stl(gen.icosphere(3))
    head = data[:SNIFF_BYTES]
    assert sniff_format(head, "part.stl") == "stl"  # nothing to see in the head
    with pytest.raises(UnsupportedFormat, match=r"(?i)truncated binary STL"):
        check_complete("stl", head, len(data) - 50)


def test_binary_stl_with_a_few_trailing_bytes_is_tolerated_but_not_more():
    data = gen.binary_stl(gen.box())
    head = data[:SNIFF_BYTES]
    check_complete("stl", head, len(data) + 2)
    with pytest.raises(UnsupportedFormat, match=r"(?i)damaged binary STL"):
        check_complete("stl", head, len(data) + 50)


def test_truncated_glb_is_refused():
    data = gen.glb(gen.box())
    assert struct.unpack_from("<I", data, 8)[0] == len(data)
    with pytest.raises(UnsupportedFormat, match="Truncated GLB"):
        check_complete("glb", data[:SNIFF_BYTES], len(data) - 10)


def test_sniffing_only_needs_the_head():
    # A head cut in the middle of a line must still be recognised.
    data = gen.obj(gen.icosphere(4))
    assert len(data) > SNIFF_BYTES
    assert sniff(data, "part.obj") == "obj"


@pytest.mark.parametrize("header", [b"\tOFF\n", b"  OFF\n", b"\tOFF8 6 12 # comment\n"])
def test_off_header_after_whitespace_and_with_counts(header):
    # ../shared/meshes/whitespace.off starts with a tab and puts the counts on the OFF line.
    body = gen.off(gen.box()).split(b"\n", 1)[1]
    if header.rstrip().endswith(b"comment"):
        body = body.split(b"\n", 1)[1]
    assert sniff(header + body, "part.bin") == "off"


def test_the_registry_is_the_one_place():
    from importlib import import_module

    from domain.formats import FORMATS, REGISTRY, SUPPORTED_TEXT

    assert len(FORMATS) == len(REGISTRY)
    for fmt in REGISTRY:
        assert fmt.label in SUPPORTED_TEXT or fmt.refused
        if fmt.refused:
            continue
        module, function = fmt.loader.split(":")
        assert callable(getattr(import_module(f"domain.analysis.loaders.{module}"), function))
    from domain.formats import _extension

    for fmt in REGISTRY:
        for ext in fmt.extensions:
            assert _extension(f"PART.{ext.upper()}") == fmt.name
