"""Objects in an S3 bucket (or any S3-compatible server), through aioboto3.

One client (one connection pool) serves the store for its lifetime: creating a
client per call costs far more than the call itself. Uploads stream: a small
object is one PutObject, a larger one a multipart upload whose parts are
buffered one at a time, and which is aborted on any failure, so a failed put
leaves neither an object nor billed orphan parts. Every object is written with
server-side encryption, on top of our own encryption of its content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from storage.objects.base import (
    ObjectInfo,
    ObjectMissing,
    ObjectStoreError,
    StoreUnavailable,
    check_key,
    check_prefix,
)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's floor for every part but the last
PART_SIZE = 8 * MIB
READ_CHUNK = 1 * MIB
SSE_MODES = ("AES256", "aws:kms")

_TRANSIENT_ERRORS = (
    BotoConnectionError,  # refused, DNS, connect timeout
    HTTPClientError,  # read timeout, connection reset mid-response
    IncompleteReadError,
    aiohttp.ClientError,
    TimeoutError,
    ConnectionError,
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
    }
)
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})

log = logging.getLogger(__name__)


class S3ObjectStore:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        sse: str = "AES256",
        kms_key_id: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        part_size: int = PART_SIZE,
    ) -> None:
        if sse not in SSE_MODES:
            raise ValueError(f"sse must be one of {SSE_MODES}, not {sse!r}")
        if kms_key_id and sse != "aws:kms":
            raise ValueError("kms_key_id needs sse='aws:kms'")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self._part_size = part_size
        self._sse: dict[str, str] = {"ServerSideEncryption": sse}
        if kms_key_id:
            self._sse["SSEKMSKeyId"] = kms_key_id
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "config": _config(endpoint_url, connect_timeout, read_timeout, max_attempts),
        }
        self._s3_client: Any = None
        self._exit_stack = AsyncExitStack()
        self._client_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        s3_key = self._s3_key(key)
        parts = aiter(_parts(chunks, self._part_size))
        first, last = await anext(parts)
        if last:
            await self._call("put_object", key, Key=s3_key, Body=first, **self._sse)
            return len(first)
        return await self._put_multipart(key, s3_key, first, parts)

    async def get(self, key: str) -> AsyncIterator[bytes]:
        response = await self._call("get_object", key, Key=self._s3_key(key))
        body = response["Body"]
        try:
            while True:
                with _translated(key):
                    chunk = await body.read(READ_CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            # Drops the connection if the reader stopped early, instead of
            # returning a half-read one to the pool.
            body.close()

    async def delete(self, key: str) -> None:
        await self._call("delete_object", key, Key=self._s3_key(key))

    async def exists(self, key: str) -> bool:
        try:
            await self._call("head_object", key, Key=self._s3_key(key))
        except ObjectMissing:
            return False
        return True

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        check_prefix(prefix)
        paginator = (await self._client()).get_paginator("list_objects_v2")
        pages = aiter(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix))
        while True:
            with _translated():
                page = await anext(pages, None)
            if page is None:
                return
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                if _is_valid_key(key):
                    yield ObjectInfo(key, item["Size"], item["LastModified"])

    async def remove_incomplete(self, older_than: datetime) -> int:
        listing = await self._call("list_multipart_uploads", Prefix=self.prefix)
        removed = 0
        for upload in listing.get("Uploads", []):
            if upload["Initiated"] < older_than:
                await self._call(
                    "abort_multipart_upload", Key=upload["Key"], UploadId=upload["UploadId"]
                )
                removed += 1
        return removed

    async def ping(self) -> None:
        try:
            await self._call("head_bucket")
        except StoreUnavailable:
            raise
        except ObjectStoreError as error:
            # A missing bucket or a refused credential makes the store just as unusable.
            raise StoreUnavailable(f"bucket {self.bucket!r} is not usable: {error}") from error

    async def close(self) -> None:
        async with self._client_lock:
            await self._exit_stack.aclose()
            self._s3_client = None

    async def _client(self) -> Any:
        """The store's one client, made on first use (it belongs to this event loop)."""
        async with self._client_lock:
            if self._s3_client is None:
                client = aioboto3.Session().client("s3", **self._client_args)
                self._s3_client = await self._exit_stack.enter_async_context(client)
        return self._s3_client

    async def _call(self, operation: str, key: str = "", **params: Any) -> Any:
        """One S3 call on this bucket, its errors translated.

        Only S3 calls are translated: an error from the caller's own stream
        must reach the caller as it was, not as "S3 unreachable".
        """
        client = await self._client()
        with _translated(key):
            return await getattr(client, operation)(Bucket=self.bucket, **params)

    def _s3_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def _put_multipart(
        self, key: str, s3_key: str, first: bytes, rest: AsyncIterator[tuple[bytes, bool]]
    ) -> int:
        created = await self._call("create_multipart_upload", key, Key=s3_key, **self._sse)
        upload = {"Key": s3_key, "UploadId": created["UploadId"]}
        try:
            done = [await self._upload_part(key, upload, 1, first)]
            size = len(first)
            async for part, _ in rest:
                done.append(await self._upload_part(key, upload, len(done) + 1, part))
                size += len(part)
            await self._call(
                "complete_multipart_upload", key, **upload, MultipartUpload={"Parts": done}
            )
        except BaseException:
            await self._abort(upload)
            raise
        return size

    async def _upload_part(
        self, key: str, upload: dict[str, str], number: int, body: bytes
    ) -> dict[str, Any]:
        response = await self._call("upload_part", key, **upload, PartNumber=number, Body=body)
        part = {"PartNumber": number, "ETag": response["ETag"]}
        # botocore adds a CRC to each part by default; completing then needs it back.
        part.update({k: v for k, v in response.items() if k.startswith("Checksum")})
        return part

    async def _abort(self, upload: dict[str, str]) -> None:
        """Best effort, and shielded: a cancelled put must still drop its parts."""
        task = asyncio.ensure_future(self._call("abort_multipart_upload", **upload))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The original error matters more; a bucket lifecycle rule for
            # incomplete uploads is the backstop for this case.
            log.warning("could not abort multipart upload of %s", upload["Key"], exc_info=True)


async def _parts(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[tuple[bytes, bool]]:
    """Pieces of at least `size` bytes (the last may be shorter), each with a last flag.

    A full piece is held until the next byte arrives, so the last one is known
    and never empty unless the whole stream is. Memory: one piece plus one chunk.
    """
    held: bytes | None = None
    buffer = bytearray()
    async for chunk in chunks:
        if not chunk:
            continue
        if held is not None:
            yield held, False
            held = None
        buffer += chunk
        if len(buffer) >= size:
            held = bytes(buffer)
            buffer.clear()
    yield (held if held is not None else bytes(buffer)), True


@contextlib.contextmanager
def _translated(key: str = "") -> Iterator[None]:
    """Turn botocore's and aiohttp's errors into the store's own."""
    try:
        yield
    except ClientError as error:
        raise _client_error(error, key) from error
    except _TRANSIENT_ERRORS as error:
        raise StoreUnavailable(f"S3 unreachable: {error}") from error
    except BotoCoreError as error:
        raise ObjectStoreError(f"S3 client error: {error}") from error


def _client_error(error: ClientError, key: str) -> ObjectStoreError:
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in _MISSING_CODES:
        return ObjectMissing(key)
    if status >= 500 or code in _TRANSIENT_CODES:
        return StoreUnavailable(f"S3 answered {status} {code}")
    return ObjectStoreError(f"S3 answered {status} {code}: {error}")


def _config(
    endpoint_url: str | None, connect_timeout: float, read_timeout: float, max_attempts: int
) -> AioConfig:
    return AioConfig(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        # S3-compatible servers (MinIO, Ceph, moto) rarely resolve bucket subdomains.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return check_prefix(prefix + "/") if prefix else ""


def _is_valid_key(key: str) -> bool:
    try:
        check_key(key)
    except ValueError:
        return False
    return True
