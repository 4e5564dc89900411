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
    claims = {
        "sub": str(model.id),
        "uid": str(access.viewer.user_id),
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


def verify_link(settings: Settings, token: str) -> LinkClaims:
    """The link's claims, or NOT_FOUND: a bad, expired or foreign link reveals nothing."""
    try:
        decoded = jwt.decode(token, _key(settings), algorithms=[_ALGORITHM])
        jwt.JWTClaimsRegistry(
            exp={"essential": True}, aud={"essential": True, "value": _AUDIENCE}
        ).validate(decoded.claims)
        claims = decoded.claims
        return LinkClaims(str(claims["sub"]), str(claims["uid"]), str(claims["jti"]))
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


def content_disposition(file_name: str) -> str:
    """RFC 6266: an ASCII fallback without quotes or separators, and the UTF-8 name."""
    ascii_name = unicodedata.normalize("NFKD", file_name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_name).strip("._") or "model"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(file_name, safe='')}"


__all__ = ["DownloadLink", "LinkClaims", "content_disposition", "subject_of"]
