"""The object store contract: one small interface, its errors, and the key rule.

Objects are opaque byte streams (ciphertext, in practice) under internal keys.
Keys are ids the application makes, never user file names, so the rule is
strict: it keeps every key a safe relative path on disk and a plain S3 key.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable

MAX_KEY_LENGTH = 1024  # S3's limit, in bytes; our keys are ASCII
_KEY_CHARS = re.compile(r"[A-Za-z0-9/_.-]*")


class ObjectStoreError(Exception):
    """Base of the object store's errors; a failure not worth retrying."""


class StoreUnavailable(ObjectStoreError):
    """The store could not be reached (refused, timed out, 5xx): try again later."""


class ObjectMissing(ObjectStoreError):
    """No object under that key."""


class ObjectInfo(NamedTuple):
    key: str
    size: int
    modified: datetime  # timezone-aware, UTC


@runtime_checkable
class ObjectStore(Protocol):
    """Where encrypted files live. One instance serves one event loop."""

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the stream and return its length. The object appears only once
        complete: if anything raises (the stream included), nothing is left."""
        ...

    def get(self, key: str) -> AsyncIterator[bytes]:
        """Stream an object; ObjectMissing is raised on the first iteration."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; removing a missing one is not an error."""
        ...

    async def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in no promised order."""
        ...

    async def remove_incomplete(self, older_than: datetime) -> int:
        """Drop writes a crashed process left half done (temporary files, multipart
        uploads) started before `older_than`; returns how many."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers and can be used."""
        ...

    async def close(self) -> None: ...


def check_key(key: str) -> str:
    """Return `key` if it is a valid object key, else raise ValueError."""
    if not key or key.endswith("/"):
        raise ValueError("object key must be non-empty and not end with '/'")
    return check_prefix(key)


def check_prefix(prefix: str) -> str:
    """Like check_key, but empty and a trailing '/' are allowed (for listing)."""
    if len(prefix) > MAX_KEY_LENGTH or not _KEY_CHARS.fullmatch(prefix):
        raise ValueError("object key may only use A-Z a-z 0-9 / _ . - (at most 1024)")
    if prefix.startswith("/") or ".." in prefix or "//" in prefix:
        raise ValueError("object key must be relative, without '..' or '//'")
    if prefix == "." or prefix.startswith("./") or "/./" in prefix or prefix.endswith("/."):
        raise ValueError("object key must not have '.' path segments")
    return prefix
