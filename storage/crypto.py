"""Envelope encryption: per-file data keys, wrapped by rotating master keys.

Every stored file gets a fresh random data key. The data key encrypts the file
with a segmented streaming AEAD (the STREAM construction, as in Tink's
AES-GCM-HKDF streaming AEAD), so files of any size are sealed and opened in
memory bounded by one segment, and a segment's plaintext is released only after
its tag verifies. The data key itself is sealed ("wrapped") under the active
master key of a `KeyRing` and stored beside the file's row as a short string.
Rotating master keys re-wraps those strings; file ciphertext is never touched.

Stream format (docs/decisions/0002-envelope-encryption.md):

    header  = magic "PVE" | version 0x01 | segment size (u32 BE) | salt (16) | prefix (8)
    segment = AES-256-GCM(stream key, nonce = prefix | counter (u32 BE),
                          plaintext segment, aad = header | last flag | associated)

The stream key is HKDF-SHA256(data key, salt), so one data key can safely seal
many streams (e.g. backups under one key) without random nonces colliding.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_SIZE = 32
SEGMENT_SIZE = 64 * 1024
MIN_SEGMENT_SIZE = 1024
# A tampered header could otherwise make the reader buffer an arbitrary amount.
MAX_SEGMENT_SIZE = 4 * 1024 * 1024

_MAGIC = b"PVE"
_VERSION = 1
_SALT_SIZE = 16
_PREFIX_SIZE = 8
_TAG_SIZE = 16
_HEADER = struct.Struct(f">3sBI{_SALT_SIZE}s{_PREFIX_SIZE}s")
HEADER_SIZE = _HEADER.size
_MAX_SEGMENTS = 2**32  # the counter is 32 bits wide; never let a nonce repeat
_STREAM_INFO = b"printvault/stream/v1"
_WRAP_AAD = b"printvault/data-key/v1\x00"
_WRAP_NONCE_SIZE = 12
_WRAPPED_PREFIX = "v1"


class CryptoError(Exception):
    """Base of this module's errors."""


class IntegrityError(CryptoError):
    """Ciphertext was altered, truncated, reordered, or opened with the wrong key."""

    def __init__(self, detail: str = "") -> None:
        message = "ciphertext failed authentication"
        super().__init__(f"{message} ({detail})" if detail else message)


class UnknownKeyError(CryptoError):
    """A wrapped key names a master key that the key ring does not hold."""


class KeyRing:
    """Master keys by id: the active one wraps new data keys, all of them unwrap."""

    __slots__ = ("_keys", "active_key_id")

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        for key_id, key in keys.items():
            if not key_id or ":" in key_id:
                raise ValueError(f"master key id {key_id!r} must be non-empty without ':'")
            if len(key) != KEY_SIZE:
                raise ValueError(f"master key {key_id!r} must be {KEY_SIZE} bytes")
        if active_key_id not in keys:
            raise ValueError(f"active master key {active_key_id!r} is not in the key ring")
        self._keys = MappingProxyType(dict(keys))
        self.active_key_id = active_key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def master_key(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise UnknownKeyError(
                f"master key {key_id!r} is not in the key ring; was it removed before "
                "every data key wrapped under it was re-wrapped?"
            ) from None

    def __repr__(self) -> str:
        # Never print key material, only ids.
        return f"KeyRing(key_ids={list(self._keys)!r}, active_key_id={self.active_key_id!r})"


@dataclass(frozen=True)
class WrappedKey:
    """A data key sealed under the master key `key_id`."""

    key_id: str
    blob: bytes

    def to_str(self) -> str:
        """Compact text for a database column: `v1:<key id>:<base64url blob>`."""
        blob = base64.urlsafe_b64encode(self.blob).rstrip(b"=").decode("ascii")
        return f"{_WRAPPED_PREFIX}:{self.key_id}:{blob}"

    @classmethod
    def from_str(cls, text: str) -> WrappedKey:
        version, _, rest = text.partition(":")
        key_id, _, blob = rest.partition(":")
        if version != _WRAPPED_PREFIX or not key_id or not blob:
            raise ValueError("not a wrapped key string (expected `v1:<key id>:<blob>`)")
        try:
            raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("wrapped key blob is not base64url") from None
        return cls(key_id=key_id, blob=raw)


# --- data keys -------------------------------------------------------------


def new_data_key(ring: KeyRing) -> tuple[bytes, WrappedKey]:
    """A fresh 256-bit data key and its wrapped form under the active master key."""
    data_key = AESGCM.generate_key(bit_length=256)
    return data_key, _wrap(ring, ring.active_key_id, data_key)


def unwrap(ring: KeyRing, wrapped: WrappedKey) -> bytes:
    master = AESGCM(ring.master_key(wrapped.key_id))
    nonce, sealed = wrapped.blob[:_WRAP_NONCE_SIZE], wrapped.blob[_WRAP_NONCE_SIZE:]
    try:
        return master.decrypt(nonce, sealed, _wrap_aad(wrapped.key_id))
    except (InvalidTag, ValueError):
        raise IntegrityError(f"wrapped data key under {wrapped.key_id!r}") from None


def rewrap(ring: KeyRing, wrapped: WrappedKey) -> WrappedKey:
    """Re-seal a data key under the active master key; the same object if already there."""
    if wrapped.key_id == ring.active_key_id:
        return wrapped
    return _wrap(ring, ring.active_key_id, unwrap(ring, wrapped))


def _wrap(ring: KeyRing, key_id: str, data_key: bytes) -> WrappedKey:
    nonce = os.urandom(_WRAP_NONCE_SIZE)
    sealed = AESGCM(ring.master_key(key_id)).encrypt(nonce, data_key, _wrap_aad(key_id))
    return WrappedKey(key_id=key_id, blob=nonce + sealed)


def _wrap_aad(key_id: str) -> bytes:
    # Binding the id stops a blob from being relabelled as another key's.
    return _WRAP_AAD + key_id.encode()


# --- streaming AEAD --------------------------------------------------------


async def encrypt_stream(
    chunks: AsyncIterable[bytes],
    data_key: bytes,
    associated: bytes,
    *,
    segment_size: int = SEGMENT_SIZE,
) -> AsyncIterator[bytes]:
    """Seal chunks of any sizes; yields the header, then one item per segment.

    `associated` (the object's id) is authenticated with every segment, so the
    ciphertext only opens as that object. Takes ownership of `chunks`: it is
    closed when this stream ends or is closed.
    """
    sealer = _Sealer(data_key, associated, segment_size)
    cutter = _Cutter(segment_size)
    yield sealer.header
    async with _closing(chunks) as source:
        async for chunk in source:
            for segment in cutter.feed(chunk):
                yield sealer.seal(segment, last=False)
    yield sealer.seal(cutter.rest(), last=True)


async def decrypt_stream(
    chunks: AsyncIterable[bytes], data_key: bytes, associated: bytes
) -> AsyncIterator[bytes]:
    """Open a sealed stream, yielding each segment's plaintext once it authenticates.

    Raises IntegrityError at the first segment that does not, so a consumer may
    have received the authentic segments before it; a file is only known whole
    and untruncated when the stream ends without error. Takes ownership of `chunks`.
    """
    async with _closing(chunks) as source:
        header, rest = await _read_header(source)
        opener = _Opener(data_key, associated, header)
        cutter = _Cutter(opener.sealed_size)
        for segment in cutter.feed(rest):
            yield opener.open(segment, last=False)
        async for chunk in source:
            for segment in cutter.feed(chunk):
                yield opener.open(segment, last=False)
    yield opener.open(cutter.rest(), last=True)


def encrypt_bytes(
    data: bytes, data_key: bytes, associated: bytes, *, segment_size: int = SEGMENT_SIZE
) -> bytes:
    """The stream format for a small in-memory blob."""
    sealer = _Sealer(data_key, associated, segment_size)
    cutter = _Cutter(segment_size)
    parts = [sealer.header]
    parts.extend(sealer.seal(segment, last=False) for segment in cutter.feed(data))
    parts.append(sealer.seal(cutter.rest(), last=True))
    return b"".join(parts)


def decrypt_bytes(data: bytes, data_key: bytes, associated: bytes) -> bytes:
    if len(data) < HEADER_SIZE:
        raise IntegrityError("stream shorter than its header")
    opener = _Opener(data_key, associated, data[:HEADER_SIZE])
    cutter = _Cutter(opener.sealed_size)
    parts = [opener.open(segment, last=False) for segment in cutter.feed(data[HEADER_SIZE:])]
    parts.append(opener.open(cutter.rest(), last=True))
    return b"".join(parts)


@asynccontextmanager
async def _closing(chunks: AsyncIterable[bytes]) -> AsyncIterator[AsyncIterator[bytes]]:
    """Iterate `chunks`, closing it when we stop early so its source (a socket,
    a file) is released now rather than whenever the garbage collector runs."""
    source = aiter(chunks)
    try:
        yield source
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()


async def _read_header(source: AsyncIterator[bytes]) -> tuple[bytes, bytes]:
    """The header and whatever bytes arrived with it."""
    head = bytearray()
    async for chunk in source:
        head += chunk
        if len(head) >= HEADER_SIZE:
            break
    if len(head) < HEADER_SIZE:
        raise IntegrityError("stream shorter than its header")
    return bytes(head[:HEADER_SIZE]), bytes(head[HEADER_SIZE:])


class _Cutter:
    """Re-cuts a byte stream into fixed pieces, holding back the final one.

    A full piece is released only once a later byte exists, so the caller can
    tell the last piece (which `rest` returns, possibly short or empty) apart.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buffer += data
        start, size = 0, self._size
        # Walk an offset instead of deleting each piece: that would be quadratic
        # when one huge chunk arrives.
        while len(self._buffer) - start > size:
            yield bytes(self._buffer[start : start + size])
            start += size
        del self._buffer[:start]

    def rest(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


class _Segments:
    """Per-stream state shared by both directions: key, nonces, associated data."""

    def __init__(self, data_key: bytes, associated: bytes, header: bytes) -> None:
        _, _, _, salt, self._prefix = _HEADER.unpack(header)
        self.header = header
        self._aead = AESGCM(_stream_key(data_key, salt))
        # Header and flag have fixed sizes, so appending `associated` is unambiguous;
        # the header in the AAD also authenticates the segment size and salt.
        self._aad = {last: header + bytes([last]) + associated for last in (False, True)}
        self._counter = 0

    def _next_nonce(self) -> bytes:
        if self._counter >= _MAX_SEGMENTS:
            raise ValueError("stream too long for a 32-bit segment counter")
        nonce = self._prefix + self._counter.to_bytes(4, "big")
        self._counter += 1
        return nonce


class _Sealer(_Segments):
    def __init__(self, data_key: bytes, associated: bytes, segment_size: int) -> None:
        _check_segment_size(segment_size)
        salt, prefix = os.urandom(_SALT_SIZE), os.urandom(_PREFIX_SIZE)
        header = _HEADER.pack(_MAGIC, _VERSION, segment_size, salt, prefix)
        super().__init__(data_key, associated, header)

    def seal(self, segment: bytes, *, last: bool) -> bytes:
        return self._aead.encrypt(self._next_nonce(), segment, self._aad[last])


class _Opener(_Segments):
    def __init__(self, data_key: bytes, associated: bytes, header: bytes) -> None:
        magic, version, segment_size, _, _ = _HEADER.unpack(header)
        if magic != _MAGIC or version != _VERSION:
            raise IntegrityError("not a printvault v1 stream")
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise IntegrityError("segment size out of range")
        super().__init__(data_key, associated, header)
        self.sealed_size = segment_size + _TAG_SIZE

    def open(self, sealed: bytes, *, last: bool) -> bytes:
        if len(sealed) < _TAG_SIZE:
            raise IntegrityError("stream truncated")
        try:
            return self._aead.decrypt(self._next_nonce(), sealed, self._aad[last])
        except (InvalidTag, ValueError):
            raise IntegrityError() from None


def _stream_key(data_key: bytes, salt: bytes) -> bytes:
    if len(data_key) != KEY_SIZE:
        raise ValueError(f"data key must be {KEY_SIZE} bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=_STREAM_INFO)
    return hkdf.derive(data_key)


def _check_segment_size(segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(
            f"segment size must be within {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE} bytes"
        )
