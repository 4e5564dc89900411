"""Reading parts of a 3MF package (a ZIP archive) without trusting it.

A hostile archive may declare or hide huge uncompressed sizes (zip bombs),
hold thousands of entries, use names meant to escape a directory when
extracted, or carry XML with entity declarations (billion laughs). Nothing
is ever extracted to disk; parts are streamed, every byte read is counted
against a budget, and XML is refused as soon as a DTD shows up.
"""

from __future__ import annotations

import io
import re
import zipfile

from ..errors import AnalysisFailed

READ_SIZE = 1 << 20
# Uncompressed/compressed ratio above which a large part is taken for a bomb;
# mesh XML compresses about 5 to 20 times.
MAX_RATIO = 200
RATIO_CHECK_ABOVE = 1 << 20
_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


class Package:
    def __init__(self, data: bytes, max_unpacked_bytes: int, max_entries: int) -> None:
        try:
            self._zip = zipfile.ZipFile(io.BytesIO(bytes(data)))
            entries = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
            raise AnalysisFailed("The 3MF file is not a valid ZIP archive.") from exc
        if len(entries) > max_entries:
            raise AnalysisFailed(f"The 3MF archive holds more than {max_entries} files.")
        self._entries: dict[str, zipfile.ZipInfo] = {}
        for entry in entries:
            key = _safe_name(entry.filename).lower()  # OPC part names ignore case
            if key in self._entries:
                raise AnalysisFailed("The 3MF archive holds the same file twice.")
            self._entries[key] = entry
        self._budget = max_unpacked_bytes
        self._limit = max_unpacked_bytes

    def __contains__(self, name: str) -> bool:
        return _part_key(name) in self._entries

    def open(self, name: str) -> PartReader:
        entry = self._entries.get(_part_key(name))
        if entry is None:
            raise AnalysisFailed("The 3MF archive refers to a file it does not contain.")
        if entry.flag_bits & 0x1:
            raise AnalysisFailed("The 3MF archive is encrypted.")
        if entry.file_size > self._budget:
            raise self._too_big()
        if entry.file_size > RATIO_CHECK_ABOVE and entry.file_size > MAX_RATIO * max(
            entry.compress_size, 1
        ):
            raise AnalysisFailed("The 3MF archive is compressed suspiciously well (zip bomb?).")
        return PartReader(self._zip.open(entry), self)

    def spend(self, count: int) -> None:
        # Declared sizes can lie: count what actually comes out.
        self._budget -= count
        if self._budget < 0:
            raise self._too_big()

    def _too_big(self) -> AnalysisFailed:
        return AnalysisFailed(f"The 3MF archive unpacks to more than {_size(self._limit)}.")

    def close(self) -> None:
        self._zip.close()


class PartReader:
    """File-like view of one part that counts bytes and refuses DTDs."""

    def __init__(self, stream, package: Package) -> None:
        self._stream = stream
        self._package = package
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        size = READ_SIZE if size is None or size < 0 else min(size, READ_SIZE)
        try:
            chunk = self._stream.read(size)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise AnalysisFailed("The 3MF archive is damaged.") from exc
        self._package.spend(len(chunk))
        # The marker may straddle two reads: look at the previous read's end too.
        if _DTD.search(self._tail + chunk):
            raise AnalysisFailed("The 3MF file's XML declares a DTD or entities, which is refused.")
        self._tail = chunk[-16:]
        return chunk

    def close(self) -> None:
        self._stream.close()


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):g} MB"
    return f"{count / 1024:g} KB"


def _safe_name(name: str) -> str:
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or ".." in parts
        or ":" in parts[0]
    ):
        raise AnalysisFailed("The 3MF archive contains a file with an unsafe name.")
    return name


def _part_key(name: str) -> str:
    """Relationship targets are absolute ('/3D/3dmodel.model'); entries are not."""
    return name.lstrip("/").lower()
