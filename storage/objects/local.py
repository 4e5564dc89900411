"""Objects as files under one directory: the embedded default.

A put writes a private temp file beside its target, fsyncs it and renames it
into place, so readers see either nothing or the whole object, also after a
crash. Temp names contain '~', which no valid key can, so they never collide
with objects and listing skips them. Blocking file calls run in threads.
"""

from __future__ import annotations

import asyncio
import builtins  # `list` is also a method of the store
import contextlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from io import BufferedWriter
from pathlib import Path

from storage.objects.base import (
    ObjectInfo,
    ObjectMissing,
    StoreUnavailable,
    check_key,
    check_prefix,
)

CHUNK_SIZE = 1024 * 1024
_TEMP_PREFIX = ".put~"
_DIR_MODE = 0o700


class LocalObjectStore:
    def __init__(self, root: Path, *, chunk_size: int = CHUNK_SIZE) -> None:
        self.root = Path(root)
        self._chunk_size = chunk_size
        self.root.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        target = self._path(key)
        file, temp = await asyncio.to_thread(self._create_temp, target.parent)
        try:
            # Closing a buffered file waits for a write still running in a
            # thread, so a cancelled put never closes the fd under that write.
            with file:
                size = await self._copy(chunks, file)
                await asyncio.to_thread(_flush_and_sync, file)
            await asyncio.to_thread(_publish, temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return size

    async def get(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(key) from None
        with file:
            while chunk := await asyncio.to_thread(file.read, self._chunk_size):
                yield chunk

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            await asyncio.to_thread(path.unlink)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        check_prefix(prefix)
        # Start at the prefix's directory instead of walking the whole tree.
        pending = [prefix.rpartition("/")[0]]
        while pending:
            directory = pending.pop()
            subdirs, objects = await asyncio.to_thread(self._scan, directory)
            pending.extend(d for d in subdirs if _may_hold(d, prefix))
            for info in objects:
                if info.key.startswith(prefix):
                    yield info

    async def remove_incomplete(self, older_than: datetime) -> int:
        return await asyncio.to_thread(self._remove_temporaries, older_than.timestamp())

    def _remove_temporaries(self, cutoff: float) -> int:
        removed = 0
        for path in self.root.rglob(_TEMP_PREFIX + "*"):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    async def ping(self) -> None:
        usable = await asyncio.to_thread(_is_writable_dir, self.root)
        if not usable:
            raise StoreUnavailable(f"object directory {self.root} is missing or not writable")

    async def close(self) -> None:
        """Nothing to release; here to honour the interface."""

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _create_temp(self, directory: Path) -> tuple[BufferedWriter, Path]:
        self._make_dirs(directory)
        fd, name = tempfile.mkstemp(dir=directory, prefix=_TEMP_PREFIX)  # mode 0600
        return os.fdopen(fd, "wb"), Path(name)

    def _make_dirs(self, directory: Path) -> None:
        # Path.mkdir(parents=True) gives intermediate directories the umask's
        # default mode; each level must be 0700.
        current = self.root
        for part in directory.relative_to(self.root).parts:
            current = current / part
            current.mkdir(mode=_DIR_MODE, exist_ok=True)

    async def _copy(self, chunks: AsyncIterable[bytes], file: BufferedWriter) -> int:
        """Write the stream in batches of about chunk_size: one thread hop each."""
        size, batch = 0, bytearray()
        async for chunk in chunks:
            size += len(chunk)
            batch += chunk
            if len(batch) >= self._chunk_size:
                await asyncio.to_thread(file.write, bytes(batch))
                batch.clear()
        await asyncio.to_thread(file.write, bytes(batch))
        return size

    def _scan(self, directory: str) -> tuple[builtins.list[str], builtins.list[ObjectInfo]]:
        """Subdirectory keys and objects directly in one directory."""
        subdirs: list[str] = []
        objects: list[ObjectInfo] = []
        try:
            entries = list(os.scandir(self.root / directory))
        except (FileNotFoundError, NotADirectoryError):
            return subdirs, objects
        for entry in entries:
            key = f"{directory}/{entry.name}" if directory else entry.name
            if "~" in entry.name or entry.is_symlink():
                continue
            if entry.is_dir():
                subdirs.append(key)
            elif entry.is_file():
                objects.append(_info(key, entry.stat()))
        return subdirs, objects


def _info(key: str, stat: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, tz=UTC))


def _may_hold(directory: str, prefix: str) -> bool:
    """Could keys under `directory` start with `prefix`?"""
    inner = directory + "/"
    return inner.startswith(prefix) or prefix.startswith(inner)


def _flush_and_sync(file: BufferedWriter) -> None:
    file.flush()
    os.fsync(file.fileno())


def _publish(temp: Path, target: Path) -> None:
    os.replace(temp, target)
    # The rename lives in the directory: sync it too, or a crash may forget it.
    fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
