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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from domain import formats
from domain.analysis.sandbox import StreamedAnalysis
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
    # The analysis that watched the plaintext stream in, if one did: the job
    # takes its result instead of fetching and decrypting the stored file.
    early: StreamedAnalysis | None = None


# Starts an analysis of an upload of the given format while it streams in, or
# says no (None): too many at once, no child available, or not wanted.
StartAnalysis = Callable[[str], StreamedAnalysis | None]


def safe_file_name(raw: str | None) -> str:
    """The name to show: no directories, no control characters, bounded length."""
    # Bidi overrides (U+202E) and other invisible format characters are dropped, so a
    # name shows as what it is.
    base = visible_name(posixpath.basename((raw or "").replace("\\", "/"))).strip()
    if not base or base in (".", ".."):
        raise BadUserInput("The file needs a name.", field="file")
    return clean_name(base[-255:], "file", 255)


class _Inspector:
    """Watches the plaintext stream: size cap, format by content, completeness;
    and hands each chunk to the analysis child, once the format is known."""

    def __init__(
        self, file_name: str, max_bytes: int, start_analysis: StartAnalysis | None = None
    ) -> None:
        self.file_name = file_name
        self.max_bytes = max_bytes
        self.size = 0
        self.head = b""
        self.format: str | None = None
        self.early: StreamedAnalysis | None = None
        self._start_analysis = start_analysis
        self._unfed: list[bytes] = []  # chunks that came before the format was known

    async def watch(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise PayloadTooLarge(f"The file is larger than {self.max_bytes} bytes.")
            if self.format is None:
                self.head += chunk[: formats.SNIFF_BYTES - len(self.head)]
                self._unfed.append(chunk)
                if len(self.head) >= formats.SNIFF_BYTES:
                    self.format = formats.sniff_format(self.head, self.file_name)
                    self._begin_analysis()
            elif self.early is not None:
                self.early.feed(chunk)
            yield chunk
        if self.format is None:
            self.format = formats.sniff_format(self.head, self.file_name)
            self._begin_analysis()
        formats.check_complete(self.format, self.head, self.size)
        if self.early is not None:
            self.early.finish(self.size)

    def _begin_analysis(self) -> None:
        unfed, self._unfed = self._unfed, []
        if self._start_analysis is None or self.format is None:
            return
        # Does not block: the child is forked and fed by the analysis' own thread.
        self.early = self._start_analysis(self.format)
        if self.early is not None:
            for chunk in unfed:
                self.early.feed(chunk)

    def abort(self) -> None:
        if self.early is not None:
            self.early.abort()


async def store_upload(
    store: ObjectStore,
    ring: KeyRing,
    chunks: AsyncIterator[bytes],
    file_name: str,
    max_bytes: int,
    start_analysis: StartAnalysis | None = None,
) -> StoredUpload:
    name = safe_file_name(file_name)
    object_key = f"{OBJECT_PREFIX}{uuid.uuid4().hex}"
    data_key, wrapped = new_data_key(ring)
    inspector = _Inspector(name, max_bytes, start_analysis)
    # The object id is bound into every segment's tag, so ciphertext moved to
    # another object fails to decrypt.
    sealed = encrypt_stream(inspector.watch(chunks), data_key, object_key.encode())
    try:
        await store.put(object_key, sealed)
    except BaseException:  # refused, failed or cancelled: the child's input is moot
        inspector.abort()
        raise
    assert inspector.format is not None
    return StoredUpload(
        object_key=object_key,
        wrapped_key=wrapped.to_str(),
        file_name=name,
        size=inspector.size,
        format=inspector.format,
        early=inspector.early,
    )
