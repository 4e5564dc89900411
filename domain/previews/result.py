"""What make_previews returns, and its framing for a pipe out of an isolated child."""

from __future__ import annotations

import struct
from dataclasses import dataclass

_MAGIC = b"PVPREV1\n"
_HEADER = struct.Struct("<8sQQI")  # magic, GLB length, PNG length, triangles


@dataclass(frozen=True)
class Previews:
    glb: bytes  # model/gltf-binary: metres, centred, +Y up, normals, <= 200 k triangles
    png: bytes  # image/png: RGBA, transparent background, rules.THUMBNAIL_PIXELS square
    triangles: int  # in the GLB

    def pack(self) -> bytes:
        """One length-prefixed frame (binary: no base64 through JSON)."""
        header = _HEADER.pack(_MAGIC, len(self.glb), len(self.png), self.triangles)
        return header + self.glb + self.png

    @classmethod
    def unpack(cls, frame: bytes) -> Previews:
        """The inverse of pack; ValueError unless the frame is exactly one whole result."""
        if len(frame) < _HEADER.size:
            raise ValueError("truncated previews frame")
        magic, glb_length, png_length, triangles = _HEADER.unpack_from(frame)
        if magic != _MAGIC or len(frame) != _HEADER.size + glb_length + png_length:
            raise ValueError("malformed previews frame")
        glb = bytes(frame[_HEADER.size : _HEADER.size + glb_length])
        png = bytes(frame[_HEADER.size + glb_length :])
        if not glb.startswith(b"glTF") or not png.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError("malformed previews frame")
        return cls(glb, png, triangles)
