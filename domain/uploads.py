"""Receiving a customer's file: checked while it streams, encrypted as it is stored.

The bytes pass through here once, in chunks: counted against the size cap,
sniffed for their format from the first bytes, and handed to the envelope
encryption on their way to the object store. Nothing is buffered whole and no
plaintext reaches the disk. A file that breaks a rule stops the stream; the
store then keeps nothing.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from domain import formats
from domain.errors import BadUserInput, PayloadTooLarge
from domain.validation import clean_name, visible_name
from storage.crypto import KeyRing, encrypt_stream, new_data_key
from storage.objects import ObjectStore

OBJECT_PREFIX = "models/"


@dataclass
class StoredUpload:
    """A file already stored (encrypted), waiting for the operation that claims it."""

    object_key: str
    wrapped_key: str
    file_name: str
    size: int
    format: str
    claimed: bool = False


def safe_file_name(raw: str | None) -> str:
    """The name to show: no directories, no control characters, bounded length."""
    # Bidi overrides (U+202E) and other invisible format characters are dropped, so a
    # name shows as what it is.
    base = visible_name(posixpath.basename((raw or "").replace("\\", "/"))).strip()
    if not base or base in (".", ".."):
        raise BadUserInput("The file needs a name.", field="file")
    return clean_name(base[-255:], "file", 255)


class _Inspector:
    """Watches the plaintext stream: size cap, format by content, completeness."""

    def __init__(self, file_name: str, max_bytes: int) -> None:
        self.file_name = file_name
        self.max_bytes = max_bytes
        self.size = 0
        self.head = b""
        self.format: str | None = None

    async def watch(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise PayloadTooLarge(f"The file is larger than {self.max_bytes} bytes.")
            if self.format is None:
                self.head += chunk[: formats.SNIFF_BYTES - len(self.head)]
                if len(self.head) >= formats.SNIFF_BYTES:
                    self.format = formats.sniff_format(self.head, self.file_name)
            yield chunk
        if self.format is None:
            self.format = formats.sniff_format(self.head, self.file_name)
        formats.check_complete(self.format, self.head, self.size)


async def store_upload(
    store: ObjectStore,
    ring: KeyRing,
    chunks: AsyncIterator[bytes],
    file_name: str,
    max_bytes: int,
) -> StoredUpload:
    name = safe_file_name(file_name)
    object_key = f"{OBJECT_PREFIX}{uuid.uuid4().hex}"
    data_key, wrapped = new_data_key(ring)
    inspector = _Inspector(name, max_bytes)
    # The object id is bound into every segment's tag, so ciphertext moved to
    # another object fails to decrypt.
    sealed = encrypt_stream(inspector.watch(chunks), data_key, object_key.encode())
    await store.put(object_key, sealed)
    assert inspector.format is not None
    return StoredUpload(
        object_key=object_key,
        wrapped_key=wrapped.to_str(),
        file_name=name,
        size=inspector.size,
        format=inspector.format,
    )
