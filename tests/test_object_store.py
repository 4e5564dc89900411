"""The object store contract, run against the local directory and a real S3 server."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import stat
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from storage.objects import (
    LocalObjectStore,
    ObjectMissing,
    ObjectStore,
    StoreUnavailable,
    open_object_store,
)
from storage.objects.s3 import S3ObjectStore

if TYPE_CHECKING:
    from tests.s3_server import MotoS3

pytest_plugins = ["tests.s3_server"]

MIB = 1024 * 1024


async def chunked(data: bytes, seed: int = 1, largest: int = 300_000) -> AsyncIterator[bytes]:
    rng = random.Random(seed)
    start = 0
    while start < len(data):
        end = start + rng.randint(1, largest)
        yield data[start:end]
        start = end


async def failing_after(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // MIB):
        yield bytes(MIB)
    raise RuntimeError("client went away")


async def read(store: ObjectStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.get(key)])


async def listed(store: ObjectStore, prefix: str = "") -> dict[str, int]:
    return {info.key: info.size async for info in store.list(prefix)}


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        opened: ObjectStore = LocalObjectStore(tmp_path / "objects")
    else:
        s3: MotoS3 = request.getfixturevalue("moto_s3")
        # A prefix per test keeps tests apart in the one session bucket.
        opened = S3ObjectStore(s3.bucket, f"t-{uuid.uuid4().hex}", endpoint_url=s3.endpoint_url)
    yield opened
    await opened.close()


def leftovers(store: ObjectStore, moto: MotoS3 | None) -> list[str]:
    """Everything a store holds, as seen from outside: files, objects, open uploads."""
    if isinstance(store, LocalObjectStore):
        return [str(path) for path in store.root.rglob("*") if not path.is_dir()]
    assert isinstance(store, S3ObjectStore) and moto is not None
    client = moto.client()
    objects = client.list_objects_v2(Bucket=moto.bucket, Prefix=store.prefix)
    uploads = client.list_multipart_uploads(Bucket=moto.bucket, Prefix=store.prefix)
    return [item["Key"] for item in objects.get("Contents", []) + uploads.get("Uploads", [])]


def moto_for(store: ObjectStore, request: pytest.FixtureRequest) -> MotoS3 | None:
    return request.getfixturevalue("moto_s3") if isinstance(store, S3ObjectStore) else None


# --- the contract, on both stores ------------------------------------------


async def test_round_trip_of_a_multipart_sized_object(store: ObjectStore) -> None:
    data = random.Random(3).randbytes(12 * MIB + 5)
    assert await store.put("models/ab/12mib", chunked(data)) == len(data)
    assert await read(store, "models/ab/12mib") == data
    assert await store.exists("models/ab/12mib")


@pytest.mark.parametrize("data", [b"", b"x", bytes(70_000)])
async def test_round_trip_of_small_objects(store: ObjectStore, data: bytes) -> None:
    assert await store.put("small", chunked(data)) == len(data)
    assert await read(store, "small") == data


async def test_put_replaces_an_object(store: ObjectStore) -> None:
    await store.put("k", chunked(b"old"))
    await store.put("k", chunked(b"new!"))
    assert await read(store, "k") == b"new!"


@pytest.mark.parametrize("fail_after", [0, 3 * MIB, 10 * MIB])
async def test_failed_put_leaves_nothing_behind(
    store: ObjectStore, request: pytest.FixtureRequest, fail_after: int
) -> None:
    moto = moto_for(store, request)
    with pytest.raises(RuntimeError, match="client went away"):
        await store.put("models/broken", failing_after(fail_after))
    assert not await store.exists("models/broken")
    assert await asyncio.to_thread(leftovers, store, moto) == []


async def test_failed_put_keeps_the_previous_version(store: ObjectStore) -> None:
    await store.put("k", chunked(b"good"))
    with pytest.raises(RuntimeError):
        await store.put("k", failing_after(10 * MIB))
    assert await read(store, "k") == b"good"


async def test_cancelled_put_leaves_nothing_behind(
    store: ObjectStore, request: pytest.FixtureRequest
) -> None:
    moto = moto_for(store, request)
    sent_enough = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield bytes(MIB)
        sent_enough.set()
        await asyncio.Event().wait()  # a client that never finishes
        yield b""

    put = asyncio.create_task(store.put("models/stalled", stalls()))
    await sent_enough.wait()
    # The store has started writing (a temp file, a multipart upload) ...
    assert await asyncio.to_thread(leftovers, store, moto) != []
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    # ... and cleaned up after itself.
    assert await asyncio.to_thread(leftovers, store, moto) == []


async def test_missing_object(store: ObjectStore) -> None:
    assert not await store.exists("nothing/here")
    with pytest.raises(ObjectMissing):
        await read(store, "nothing/here")


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    await store.put("a/b", chunked(b"data"))
    await store.delete("a/b")
    await store.delete("a/b")
    await store.delete("never/existed")
    assert not await store.exists("a/b")


async def test_list_by_prefix(store: ObjectStore) -> None:
    for key, size in [("models/a1", 3), ("models/a2", 5), ("models/b/c", 0), ("backups/x", 1)]:
        await store.put(key, chunked(bytes(size)))
    assert await listed(store) == {"models/a1": 3, "models/a2": 5, "models/b/c": 0, "backups/x": 1}
    assert await listed(store, "models/") == {"models/a1": 3, "models/a2": 5, "models/b/c": 0}
    assert await listed(store, "models/a") == {"models/a1": 3, "models/a2": 5}
    assert await listed(store, "models/b") == {"models/b/c": 0}
    assert await listed(store, "nothing/") == {}
    [info] = [info async for info in store.list("backups/")]
    assert isinstance(info.modified, datetime) and info.modified.utcoffset() is not None
    assert abs(time.time() - info.modified.timestamp()) < 120


async def test_abandoned_read_does_not_disturb_the_store(store: ObjectStore) -> None:
    await store.put("big", chunked(bytes(4 * MIB)))
    stream = store.get("big")
    await anext(stream)
    await stream.aclose()
    assert await read(store, "big") == bytes(4 * MIB)


BAD_KEYS = ["", "/abs", "..", "a/../b", "a/..", "a b", "a\\b", "é", "a//b", "a/", ".", "./a",
            "a/./b", ".put~x", "a:b", "x" * 1025]  # fmt: skip


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError):
        await store.put(key, chunked(b"x"))
    with pytest.raises(ValueError):
        await read(store, key)
    with pytest.raises(ValueError):
        await store.delete(key)
    with pytest.raises(ValueError):
        await store.exists(key)


@pytest.mark.parametrize("prefix", ["/", "../", "a b", "a/../"])
async def test_bad_list_prefixes_are_refused(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError):
        await listed(store, prefix)


async def test_ping(store: ObjectStore) -> None:
    await store.ping()


# --- local directory specifics ---------------------------------------------


def modes_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


async def test_local_files_are_private(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    await store.put("models/ab/cd/file", chunked(b"secret"))
    modes = await asyncio.to_thread(modes_under, tmp_path)
    assert modes == {
        "objects": 0o700,
        "objects/models": 0o700,
        "objects/models/ab": 0o700,
        "objects/models/ab/cd": 0o700,
        "objects/models/ab/cd/file": 0o600,
    }


async def test_local_listing_skips_unfinished_writes(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    (tmp_path / ".put~half").write_bytes(b"partial")
    await store.put("done", chunked(b"1"))
    assert await listed(store) == {"done": 1}


async def test_local_ping_fails_without_its_directory(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    (tmp_path / "objects").rmdir()
    with pytest.raises(StoreUnavailable):
        await store.ping()


# --- S3 specifics -----------------------------------------------------------


def s3_store(moto: MotoS3, **options: object) -> S3ObjectStore:
    return S3ObjectStore(
        moto.bucket, f"t-{uuid.uuid4().hex}", endpoint_url=moto.endpoint_url, **options
    )


@pytest.mark.parametrize("size", [10, 9 * MIB])
async def test_s3_objects_are_server_side_encrypted(moto_s3: MotoS3, size: int) -> None:
    store = s3_store(moto_s3)
    await store.put("k", chunked(bytes(size)))
    head = moto_s3.client().head_object(Bucket=moto_s3.bucket, Key=store.prefix + "k")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentLength"] == size
    if size > 5 * MIB:
        assert head["ETag"].endswith('-2"')  # went up as a multipart upload
    await store.close()


async def test_s3_objects_can_use_a_kms_key(moto_s3: MotoS3) -> None:
    kms_key_id = await asyncio.to_thread(moto_s3.kms_key_id)
    store = s3_store(moto_s3, sse="aws:kms", kms_key_id=kms_key_id)
    await store.put("k", chunked(bytes(9 * MIB)))
    head = moto_s3.client().head_object(Bucket=moto_s3.bucket, Key=store.prefix + "k")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert kms_key_id in head["SSEKMSKeyId"]
    assert await read(store, "k") == bytes(9 * MIB)
    await store.close()


def test_s3_options_are_checked() -> None:
    with pytest.raises(ValueError, match="sse"):
        S3ObjectStore("b", sse="none")
    with pytest.raises(ValueError, match="kms_key_id"):
        S3ObjectStore("b", sse="AES256", kms_key_id="k")
    with pytest.raises(ValueError, match="part_size"):
        S3ObjectStore("b", part_size=MIB)


async def test_s3_missing_bucket_fails_ping(moto_s3: MotoS3) -> None:
    store = S3ObjectStore("no-such-bucket", endpoint_url=moto_s3.endpoint_url)
    with pytest.raises(StoreUnavailable, match="no-such-bucket"):
        await store.ping()
    await store.close()


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound by this test, never listening, held
    until the test ends (a port probed and released could be taken meanwhile)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


async def assert_unavailable_quickly(store: S3ObjectStore) -> None:
    # Without retries or hangs; the bound is generous, for a loaded machine.
    async with asyncio.timeout(60):
        await _assert_unavailable(store)


async def _assert_unavailable(store: S3ObjectStore) -> None:
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.put("k", chunked(b"x"))
    with pytest.raises(StoreUnavailable):
        await read(store, "k")
    with pytest.raises(StoreUnavailable):
        await store.exists("k")
    await store.close()


async def test_s3_dead_endpoint_is_unavailable(moto_s3: MotoS3) -> None:
    with closed_port() as port:
        store = S3ObjectStore(
            "bucket", endpoint_url=f"http://127.0.0.1:{port}", connect_timeout=1, max_attempts=1
        )
        await assert_unavailable_quickly(store)


class _Overloaded(BaseHTTPRequestHandler):
    """An S3 endpoint that answers every request with 503 Slow Down."""

    def _refuse(self) -> None:
        body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def overloaded_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Overloaded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_s3_5xx_is_unavailable(moto_s3: MotoS3, overloaded_endpoint: str) -> None:
    store = S3ObjectStore("bucket", endpoint_url=overloaded_endpoint, max_attempts=1)
    await assert_unavailable_quickly(store)


async def test_s3_store_reuses_one_client(moto_s3: MotoS3) -> None:
    store = s3_store(moto_s3)
    await store.put("k", chunked(b"x"))
    client = store._s3_client
    await store.exists("k")
    await read(store, "k")
    assert store._s3_client is client
    await store.close()


# --- choosing a store from STORAGE_URL -------------------------------------


def test_file_url_opens_a_local_store(tmp_path: Path) -> None:
    store = open_object_store(f"file://{tmp_path}/objects")
    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "objects"


def test_s3_url_opens_an_s3_store() -> None:
    store = open_object_store(
        "s3://my-bucket/pv/objects", s3_endpoint_url="http://127.0.0.1:9", s3_sse="aws:kms"
    )
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix) == ("my-bucket", "pv/objects/")


@pytest.mark.parametrize(
    "url", ["file://relative/path", "file:relative", "ftp://host/x", "s3://", "/abs/path", ""]
)
def test_bad_storage_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="STORAGE_URL"):
        open_object_store(url)
