"""/previews/<token>: check the link and the caller's right, decrypt, answer with
the preview's media type (model/gltf-binary or image/png). Every refusal is the
same 404 and an audit row; every answer an audited view."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from domain import auth, preview_links
from domain.errors import DomainError, NotFound
from web.access import access_for, request_ip
from web.responses import error_json


async def preview(request: Request) -> Response:
    settings = request.app.state.settings
    services = request.app.state.services
    ip = request_ip(request)
    request_id = uuid.uuid4().hex[:16]
    claims: preview_links.PreviewClaims | None = None
    try:
        claims = preview_links.verify_link(settings, request.path_params["token"])
        viewer, _ = await auth.user_viewer(claims.user_id)
        body = await preview_links.open_preview(
            access_for(viewer, ip), services.store, services.keyring, claims, ip
        )
    except DomainError as error:
        # Expired, forged, or no longer allowed: the same 404, revealing nothing.
        refused = error if isinstance(error, NotFound) else NotFound(preview_links.REFUSED)
        await preview_links.record_refusal(refused, ip, claims)
        return error_json(NotFound(preview_links.REFUSED), request_id, status=404)
    except Exception as error:  # store down (503), object missing or damaged (500), a bug
        return error_json(error, request_id)
    headers = {
        "cache-control": "no-store",
        # Shown inline (an <img>, a glTF viewer's fetch), never run as a document.
        "content-disposition": "inline",
    }
    kind = claims.kind if claims else "png"  # always set here; for the type checker
    return Response(body, media_type=preview_links.MEDIA_TYPES[kind], headers=headers)
