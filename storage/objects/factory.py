"""Choose the object store from the STORAGE_URL setting."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from storage.objects.base import ObjectStore
from storage.objects.local import LocalObjectStore


def open_object_store(
    storage_url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_sse: str = "AES256",
    s3_kms_key_id: str | None = None,
) -> ObjectStore:
    """`file:///abs/path` is a local directory; `s3://bucket/prefix` a bucket,
    with credentials and region from the usual AWS_* environment variables."""
    url = urlsplit(storage_url)
    if url.scheme == "file":
        return LocalObjectStore(_local_root(url.netloc, url.path))
    if url.scheme == "s3":
        if not url.netloc:
            raise ValueError("STORAGE_URL s3://bucket/prefix needs a bucket")
        # Imported here so that a local deployment never loads aioboto3.
        from storage.objects.s3 import S3ObjectStore

        return S3ObjectStore(
            url.netloc,
            unquote(url.path),
            endpoint_url=s3_endpoint_url,
            sse=s3_sse,
            kms_key_id=s3_kms_key_id,
        )
    raise ValueError(f"STORAGE_URL must start with file:// or s3://, not {url.scheme!r}://")


def _local_root(host: str, path: str) -> Path:
    if host not in ("", "localhost"):
        raise ValueError("STORAGE_URL file:// must name a local path: file:///abs/path")
    root = Path(unquote(path))
    if not root.is_absolute():
        raise ValueError("STORAGE_URL file:// needs an absolute path: file:///abs/path")
    return root
