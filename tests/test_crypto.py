"""Envelope encryption: data keys, master key rotation, and the streaming AEAD."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.crypto import (
    HEADER_SIZE,
    SEGMENT_SIZE,
    IntegrityError,
    KeyRing,
    UnknownKeyError,
    WrappedKey,
    decrypt_bytes,
    decrypt_stream,
    encrypt_bytes,
    encrypt_stream,
    new_data_key,
    rewrap,
    unwrap,
)
from storage.objects import LocalObjectStore

TAG = 16
SEALED = SEGMENT_SIZE + TAG
OBJECT_ID = b"models/0f3c9a"


async def chunked(data: bytes, rng: random.Random, largest: int = 200_000) -> AsyncIterator[bytes]:
    """`data` in chunks of random sizes, the empty chunk included."""
    start = 0
    while start < len(data):
        end = start + rng.randint(0, largest)
        yield data[start:end]
        start = end


async def seal(data: bytes, key: bytes, associated: bytes = OBJECT_ID, seed: int = 1) -> bytes:
    stream = encrypt_stream(chunked(data, random.Random(seed)), key, associated)
    return b"".join([part async for part in stream])


async def open_sealed(
    data: bytes, key: bytes, associated: bytes = OBJECT_ID, seed: int = 2
) -> bytes:
    stream = decrypt_stream(chunked(data, random.Random(seed)), key, associated)
    return b"".join([part async for part in stream])


async def released_before_failure(sealed: bytes, key: bytes) -> int:
    """How much plaintext decrypt_stream handed out before raising IntegrityError."""
    released = 0
    with pytest.raises(IntegrityError, match="ciphertext failed authentication"):
        async for part in decrypt_stream(chunked(sealed, random.Random(3)), key, OBJECT_ID):
            released += len(part)
    return released


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture(scope="module")
def big_plaintext() -> bytes:
    return random.Random(7).randbytes(3 * SEGMENT_SIZE + 1234)


# --- streaming AEAD: round trips -------------------------------------------

SIZES = [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 5 * 1024 * 1024 + 7]


@pytest.mark.parametrize("size", SIZES)
async def test_stream_round_trip(size: int, key: bytes) -> None:
    plaintext = random.Random(size).randbytes(size)
    sealed = await seal(plaintext, key, seed=size)
    segments = max(1, -(-size // SEGMENT_SIZE))
    assert len(sealed) == HEADER_SIZE + size + segments * TAG
    assert await open_sealed(sealed, key, seed=size + 1) == plaintext


@pytest.mark.parametrize("size", [0, 1, SEGMENT_SIZE, 2 * SEGMENT_SIZE + 5])
async def test_bytes_helpers_share_the_stream_format(size: int, key: bytes) -> None:
    plaintext = os.urandom(size)
    assert await open_sealed(encrypt_bytes(plaintext, key, OBJECT_ID), key) == plaintext
    assert decrypt_bytes(await seal(plaintext, key), key, OBJECT_ID) == plaintext


async def test_same_input_seals_differently(key: bytes) -> None:
    assert encrypt_bytes(b"same", key, OBJECT_ID) != encrypt_bytes(b"same", key, OBJECT_ID)


async def test_one_huge_chunk_comes_out_in_bounded_segments(key: bytes) -> None:
    async def one_chunk() -> AsyncIterator[bytes]:
        yield bytes(8 * SEGMENT_SIZE + 3)

    sealed = [part async for part in encrypt_stream(one_chunk(), key, OBJECT_ID)]
    assert len(sealed[0]) == HEADER_SIZE
    assert max(len(part) for part in sealed[1:]) == SEALED

    async def replay() -> AsyncIterator[bytes]:
        yield b"".join(sealed)

    opened = [part async for part in decrypt_stream(replay(), key, OBJECT_ID)]
    assert max(len(part) for part in opened) == SEGMENT_SIZE


@pytest.mark.parametrize("segment_size", [10, 64 * 1024 * 1024])
def test_unreasonable_segment_size_is_refused(segment_size: int, key: bytes) -> None:
    with pytest.raises(ValueError, match="segment size"):
        encrypt_bytes(b"x", key, OBJECT_ID, segment_size=segment_size)


def test_data_key_must_be_256_bits() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        encrypt_bytes(b"x", os.urandom(16), OBJECT_ID)


# --- streaming AEAD: every kind of interference is detected ----------------


async def test_tampering_with_any_byte_is_detected(key: bytes, big_plaintext: bytes) -> None:
    sealed = await seal(big_plaintext, key)
    rng = random.Random(11)
    positions = [*range(HEADER_SIZE), *rng.sample(range(HEADER_SIZE, len(sealed)), 40)]
    positions += [HEADER_SIZE + SEALED - 1, HEADER_SIZE + SEALED, len(sealed) - 1]
    for position in positions:
        tampered = bytearray(sealed)
        tampered[position] ^= 1 << rng.randrange(8)
        released = await released_before_failure(bytes(tampered), key)
        # Nothing of the damaged segment (nor anything after it) got out.
        damaged_segment = max(0, position - HEADER_SIZE) // SEALED
        assert released <= damaged_segment * SEGMENT_SIZE, position


@pytest.mark.parametrize("segments_kept", [0, 1, 2, 3])
async def test_truncation_at_a_segment_boundary_is_detected(
    segments_kept: int, key: bytes, big_plaintext: bytes
) -> None:
    sealed = await seal(big_plaintext, key)
    released = await released_before_failure(sealed[: HEADER_SIZE + segments_kept * SEALED], key)
    assert released < len(big_plaintext)


@pytest.mark.parametrize("cut", [0, 1, HEADER_SIZE - 1, HEADER_SIZE + 10, -1, -TAG])
async def test_truncation_anywhere_else_is_detected(
    cut: int, key: bytes, big_plaintext: bytes
) -> None:
    sealed = await seal(big_plaintext, key)
    await released_before_failure(sealed[:cut], key)


async def test_appended_bytes_are_detected(key: bytes, big_plaintext: bytes) -> None:
    sealed = await seal(big_plaintext, key)
    await released_before_failure(sealed + b"\x00", key)
    await released_before_failure(sealed + sealed[HEADER_SIZE : HEADER_SIZE + SEALED], key)


def segment(index: int) -> slice:
    return slice(HEADER_SIZE + index * SEALED, HEADER_SIZE + (index + 1) * SEALED)


async def test_reordered_segments_are_detected(key: bytes, big_plaintext: bytes) -> None:
    sealed = await seal(big_plaintext, key)
    first, second = (segment(i) for i in (0, 1))
    swapped = bytearray(sealed)
    swapped[first], swapped[second] = sealed[second], sealed[first]
    assert await released_before_failure(bytes(swapped), key) == 0


async def test_segments_from_another_file_are_detected(key: bytes, big_plaintext: bytes) -> None:
    # Same data key and same object id: only the per-stream salt and nonce tell them apart.
    one, other = await seal(big_plaintext, key), await seal(big_plaintext, key)
    spliced = one[: HEADER_SIZE + SEALED] + other[HEADER_SIZE + SEALED :]
    assert await released_before_failure(spliced, key) == SEGMENT_SIZE


async def test_ciphertext_is_bound_to_its_object(key: bytes) -> None:
    sealed = await seal(b"gear housing", key, associated=b"models/a")
    with pytest.raises(IntegrityError, match="ciphertext failed authentication"):
        await open_sealed(sealed, key, associated=b"models/b")
    with pytest.raises(IntegrityError):
        decrypt_bytes(sealed, key, b"models/b")


async def test_wrong_key_is_detected(key: bytes) -> None:
    sealed = await seal(b"gear housing", key)
    with pytest.raises(IntegrityError, match="ciphertext failed authentication"):
        await open_sealed(sealed, os.urandom(32))


async def test_decrypt_closes_its_source_when_abandoned(key: bytes) -> None:
    closed = False

    async def source() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            yield encrypt_bytes(bytes(3 * SEGMENT_SIZE), key, OBJECT_ID)
        finally:
            closed = True

    stream = decrypt_stream(source(), key, OBJECT_ID)
    await anext(stream)
    await stream.aclose()
    assert closed


# --- data keys and master keys ---------------------------------------------


def ring_of(*key_ids: str) -> tuple[dict[str, bytes], KeyRing]:
    keys = {key_id: os.urandom(32) for key_id in key_ids}
    return keys, KeyRing(keys, key_ids[0])


def test_new_data_key_is_wrapped_under_the_active_key() -> None:
    _, ring = ring_of("k1", "k0")
    data_key, wrapped = new_data_key(ring)
    assert len(data_key) == 32
    assert wrapped.key_id == "k1"
    assert data_key not in wrapped.blob
    assert unwrap(ring, wrapped) == data_key
    assert new_data_key(ring)[0] != data_key


def test_wrapped_key_round_trips_through_a_string() -> None:
    _, ring = ring_of("k1a2b3c4")
    data_key, wrapped = new_data_key(ring)
    text = wrapped.to_str()
    assert text.isascii() and " " not in text and len(text) < 100
    assert WrappedKey.from_str(text) == wrapped
    assert unwrap(ring, WrappedKey.from_str(text)) == data_key


@pytest.mark.parametrize("text", ["", "v1", "v1:k1", "v1::abc", "v2:k1:abc", "v1:k1:a"])
def test_malformed_wrapped_key_string_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        WrappedKey.from_str(text)


def test_rotation_rewraps_without_touching_file_ciphertext() -> None:
    keys, old_ring = ring_of("k1")
    data_key, wrapped = new_data_key(old_ring)
    sealed = encrypt_bytes(b"bracket.stl", data_key, OBJECT_ID)

    new_ring = KeyRing({"k2": os.urandom(32), "k1": keys["k1"]}, "k2")
    rewrapped = rewrap(new_ring, wrapped)
    assert rewrapped.key_id == "k2"
    assert rewrap(new_ring, rewrapped) is rewrapped  # already current: nothing to do

    # Once every wrapped key is rewrapped, the old master key can go.
    only_new = KeyRing({"k2": new_ring.master_key("k2")}, "k2")
    assert decrypt_bytes(sealed, unwrap(only_new, rewrapped), OBJECT_ID) == b"bracket.stl"
    with pytest.raises(UnknownKeyError, match="'k1'"):
        unwrap(only_new, wrapped)


def test_unknown_key_id_is_a_clear_error() -> None:
    _, ring = ring_of("k1")
    with pytest.raises(UnknownKeyError, match="master key 'k9' is not in the key ring"):
        unwrap(ring, WrappedKey("k9", os.urandom(60)))


def test_wrapped_key_cannot_be_relabelled_or_altered() -> None:
    keys, ring = ring_of("k1", "k2")
    _, wrapped = new_data_key(ring)
    # Same key under both ids: only the key id bound as associated data stops this.
    same_key_ring = KeyRing({"k1": keys["k1"], "k2": keys["k1"]}, "k1")
    with pytest.raises(IntegrityError):
        unwrap(same_key_ring, WrappedKey("k2", wrapped.blob))
    altered = bytearray(wrapped.blob)
    altered[-1] ^= 1
    with pytest.raises(IntegrityError):
        unwrap(ring, WrappedKey("k1", bytes(altered)))
    wrong_master = KeyRing({"k1": os.urandom(32)}, "k1")
    with pytest.raises(IntegrityError):
        unwrap(wrong_master, wrapped)


@pytest.mark.parametrize(
    ("keys", "active"),
    [({"k1": b"short"}, "k1"), ({"k1": bytes(32)}, "k2"), ({"": bytes(32)}, ""), ({}, "k1")],
)
def test_key_ring_refuses_bad_keys(keys: dict[str, bytes], active: str) -> None:
    with pytest.raises(ValueError):
        KeyRing(keys, active)


def test_key_ring_never_shows_key_material() -> None:
    keys, ring = ring_of("k1")
    assert keys["k1"].hex() not in repr(ring) and str(keys["k1"]) not in repr(ring)
    assert "k1" in repr(ring)


# --- end to end: the store only ever sees ciphertext -----------------------


def contents_of_files_under(root: Path) -> list[bytes]:
    return [path.read_bytes() for path in root.rglob("*") if path.is_file()]


async def test_no_plaintext_reaches_the_disk(tmp_path: Path) -> None:
    marker = b"CONFIDENTIAL-TURBINE-BLADE-7731"
    plaintext = os.urandom(SEGMENT_SIZE) + marker * 50_000 + os.urandom(100)
    _, ring = ring_of("k1")
    data_key, _ = new_data_key(ring)
    store = LocalObjectStore(tmp_path / "objects")
    key = "models/0f3c9a"

    await store.put(key, encrypt_stream(chunked(plaintext, random.Random(5)), data_key, b"0f3c9a"))

    stored = contents_of_files_under(tmp_path)
    assert len(stored) == 1
    assert marker not in stored[0]
    assert marker[:8] not in stored[0]
    opened = decrypt_stream(store.get(key), data_key, b"0f3c9a")
    assert b"".join([part async for part in opened]) == plaintext
