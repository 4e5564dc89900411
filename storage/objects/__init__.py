"""The object store: encrypted files under internal keys, on disk or in S3.

`S3ObjectStore` lives in `storage.objects.s3`, imported only when asked for.
"""

from storage.objects.base import (
    ObjectInfo,
    ObjectMissing,
    ObjectStore,
    ObjectStoreError,
    StoreUnavailable,
    check_key,
)
from storage.objects.factory import open_object_store
from storage.objects.local import LocalObjectStore

__all__ = [
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectMissing",
    "ObjectStore",
    "ObjectStoreError",
    "StoreUnavailable",
    "check_key",
    "open_object_store",
]
