"""Download links: short-lived, signed, bound to one model and one user; each
link issued and each download is an audit event.

The link points to this server's own `/files/<token>` endpoint, which checks
the token and the caller's right again, decrypts and streams. The file never
leaves storage unencrypted any other way.
"""

from __future__ import annotations

import re
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from domain import audit
from domain.errors import NotFound
from domain.model_files import find_model_for, subject_of
from domain.policy import Access
from domain.secrets_box import derive_key
from domain.validation import visible_name
from runtime.settings import Settings
from storage.crypto import KeyRing, WrappedKey, decrypt_stream, unwrap
from storage.models import Model3D
from storage.objects import ObjectStore

_ALGORITHM = "HS256"
_AUDIENCE = "printvault-download"


@dataclass(frozen=True)
class DownloadLink:
    url: str
    expires_at: datetime


def _key(settings: Settings) -> OctKey:
    return OctKey.import_key(derive_key(settings.secret_key, b"download-link"))


async def request_download(
    settings: Settings, access: Access, model_id: object, ip: str | None
) -> DownloadLink:
    model = await find_model_for(access, "Mutation.requestDownload", model_id)
    expires = int(time.time()) + settings.download_link_seconds
    viewer = access.viewer
    # Bound to the session or API token that asked: log-out or revocation ends the link.
    credential: dict[str, object] = (
        {"sid": viewer.session_id}
        if viewer.session_id is not None
        else {"tid": str(viewer.api_token_id)}
    )
    claims = {
        "sub": str(model.id),
        "uid": str(access.viewer.user_id),
        **credential,
        "aud": _AUDIENCE,
        "exp": expires,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode({"alg": _ALGORITHM}, claims, _key(settings), algorithms=[_ALGORITHM])
    await audit.record(
        "download.link_issued",
        actor_id=access.viewer.user_id,
        company_id=model.company_id,
        model_id=model.id,
        ip=ip,
        jti=claims["jti"],
    )
    return DownloadLink(url=f"/files/{token}", expires_at=datetime.fromtimestamp(expires, UTC))


@dataclass(frozen=True)
class LinkClaims:
    model_id: str
    user_id: str
    jti: str
    session_id: int | None = None
    api_token_id: str | None = None


def verify_link(settings: Settings, token: str) -> LinkClaims:
    """The link's claims, or NOT_FOUND: a bad, expired or foreign link reveals nothing."""
    try:
        decoded = jwt.decode(token, _key(settings), algorithms=[_ALGORITHM])
        jwt.JWTClaimsRegistry(
            exp={"essential": True}, aud={"essential": True, "value": _AUDIENCE}
        ).validate(decoded.claims)
        claims = decoded.claims
        session_id, token_id = claims.get("sid"), claims.get("tid")
        if (session_id is None) == (token_id is None):  # exactly one credential
            raise ValueError("unbound link")
        return LinkClaims(
            str(claims["sub"]),
            str(claims["uid"]),
            str(claims["jti"]),
            int(session_id) if session_id is not None else None,
            str(token_id) if token_id is not None else None,
        )
    except (JoseError, KeyError, ValueError, TypeError):
        raise NotFound("This download link is not valid or has expired.") from None


async def open_download(
    access: Access, store: ObjectStore, ring: KeyRing, claims: LinkClaims, ip: str | None
) -> tuple[Model3D, AsyncIterator[bytes]]:
    """Re-check the right to download (it may have ended since the link was issued),
    record the download, and return the decrypting stream, first chunk already read
    so that a missing object fails before any response header is sent."""
    model = await find_model_for(access, "Mutation.requestDownload", claims.model_id)
    data_key = unwrap(ring, WrappedKey.from_str(model.wrapped_key))
    stream = decrypt_stream(store.get(model.object_key), data_key, model.object_key.encode())
    first = await anext(stream, b"")
    await audit.record(
        "download",
        actor_id=access.viewer.user_id,
        company_id=model.company_id,
        model_id=model.id,
        ip=ip,
        jti=claims.jti,
    )
    return model, _prepend(first, stream)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


async def byte_range(stream: AsyncIterator[bytes], start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes start..end (inclusive) of the plaintext. The cipher is a chunked AEAD stream,
    so earlier chunks are decrypted (and authenticated) and dropped, never sent."""
    position = 0
    async for chunk in stream:
        chunk_end = position + len(chunk)
        if chunk_end > start:
            yield chunk[max(0, start - position) : end + 1 - position]
        position = chunk_end
        if position > end:
            return


def content_disposition(file_name: str) -> str:
    """RFC 6266: an ASCII fallback without quotes or separators, and the UTF-8 name."""
    file_name = visible_name(file_name)  # names stored before uploads cleaned them too
    ascii_name = unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._") or "model"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(file_name, safe='')}"


__all__ = ["DownloadLink", "LinkClaims", "content_disposition", "subject_of"]
