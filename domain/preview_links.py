"""Preview links: short-lived, signed, bound to one model, one user and one kind
(the GLB or the PNG). Fetching one is audited as a view (`preview.viewed`), not
as a download; a tampered, expired or no longer allowed link is refused and
audited too (`preview.link_refused`).

The links point to this server's `/previews/<token>`, which checks the token and
the caller's right again (`Model.preview` in the policy table), decrypts the
small object in memory and answers with its media type.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import OctKey

from domain import audit
from domain.errors import NotFound
from domain.model_files import subject_of
from domain.policy import Access
from domain.secrets_box import derive_key
from runtime.settings import Settings
from storage.crypto import KeyRing, WrappedKey, decrypt_stream, unwrap
from storage.models import Model3D, ModelPreview
from storage.objects import ObjectStore

_ALGORITHM = "HS256"
_AUDIENCE = "printvault-preview"
RULE = "Model.preview"
# The kinds a link may name, and what each is served as.
MEDIA_TYPES = {"glb": "model/gltf-binary", "png": "image/png"}
REFUSED = "This preview link is not valid or has expired."


@dataclass(frozen=True)
class PreviewLinks:
    glb_url: str
    png_url: str
    expires_at: datetime


@dataclass(frozen=True)
class PreviewClaims:
    model_id: str
    user_id: str
    kind: str
    jti: str


class LinkRefused(NotFound):
    """A bad link: NOT_FOUND to the client, with what the audit row should say."""

    def __init__(self, why: str, claims: dict | None = None) -> None:
        super().__init__(REFUSED)
        self.why = why
        self.claims = claims or {}


def _key(settings: Settings) -> OctKey:
    return OctKey.import_key(derive_key(settings.secret_key, b"preview-link"))


async def preview_links(settings: Settings, access: Access, model: Model3D) -> PreviewLinks | None:
    """Fresh links to a model's previews, or None when it has none (yet, or ever).

    The caller was already allowed `Model.preview` by the field's permission."""
    row = await ModelPreview.get_or_none(model_id=model.id)
    if row is None or row.glb_key is None or row.png_key is None:
        return None
    expires = int(time.time()) + settings.preview_link_seconds
    urls = {kind: _url(settings, access, model, kind, expires) for kind in MEDIA_TYPES}
    return PreviewLinks(urls["glb"], urls["png"], datetime.fromtimestamp(expires, UTC))


def _url(settings: Settings, access: Access, model: Model3D, kind: str, expires: int) -> str:
    claims = {
        "sub": str(model.id),
        "uid": str(access.viewer.user_id),
        "knd": kind,
        "aud": _AUDIENCE,
        "exp": expires,
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode({"alg": _ALGORITHM}, claims, _key(settings), algorithms=[_ALGORITHM])
    return f"/previews/{token}"


def verify_link(settings: Settings, token: str) -> PreviewClaims:
    """The link's claims, or LinkRefused (expired, forged, another audience)."""
    try:
        decoded = jwt.decode(token, _key(settings), algorithms=[_ALGORITHM])
    except (JoseError, ValueError, TypeError):
        raise LinkRefused("invalid") from None
    claims = decoded.claims
    try:
        jwt.JWTClaimsRegistry(
            exp={"essential": True}, aud={"essential": True, "value": _AUDIENCE}
        ).validate(claims)
        kind = str(claims["knd"])
        if kind not in MEDIA_TYPES:
            raise ValueError(kind)
        return PreviewClaims(str(claims["sub"]), str(claims["uid"]), kind, str(claims["jti"]))
    except ExpiredTokenError:
        raise LinkRefused("expired", claims) from None
    except (JoseError, KeyError, ValueError, TypeError):
        raise LinkRefused("invalid", claims) from None


async def open_preview(
    access: Access, store: ObjectStore, ring: KeyRing, claims: PreviewClaims, ip: str | None
) -> bytes:
    """Re-check the right (it may have ended since the link was issued), decrypt the
    preview in memory (a few MB at most) and record the view."""
    model = await Model3D.get_or_none(id=claims.model_id)
    if model is None:
        raise NotFound(REFUSED)
    await access.authorize(RULE, subject_of(model))
    row = await ModelPreview.get_or_none(model_id=model.id)
    key = None if row is None else (row.glb_key if claims.kind == "glb" else row.png_key)
    if key is None:
        raise NotFound(REFUSED)
    data_key = unwrap(ring, WrappedKey.from_str(model.wrapped_key))
    chunks = decrypt_stream(store.get(key), data_key, key.encode())
    plain = b"".join([chunk async for chunk in chunks])
    await audit.record(
        "preview.viewed",
        actor_id=access.viewer.user_id,
        company_id=model.company_id,
        model_id=model.id,
        ip=ip,
        preview=claims.kind,
        jti=claims.jti,
    )
    return plain


async def record_refusal(error: NotFound, ip: str | None, verified: PreviewClaims | None) -> None:
    """The audit row of a refused link: what it claimed (never the token itself).

    `verified`: the claims of a genuine, unexpired link whose right has ended."""
    if verified is not None:
        claims: dict = {"uid": verified.user_id, "sub": verified.model_id}
        why = "not_allowed"
    else:
        claims = error.claims if isinstance(error, LinkRefused) else {}
        why = error.why if isinstance(error, LinkRefused) else "invalid"
    await audit.record(
        "preview.link_refused",
        actor_id=_uuid(claims.get("uid")),
        model_id=_uuid(claims.get("sub")),
        ip=ip,
        reason=why,
    )


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None
