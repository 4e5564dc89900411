"""/files/<token>: check the link and the caller's right, decrypt, stream."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from domain import auth, downloads
from domain.errors import DomainError
from web.access import access_for, request_ip
from web.responses import error_json


async def download(request: Request) -> Response:
    settings = request.app.state.settings
    services = request.app.state.services
    ip = request_ip(request)
    request_id = uuid.uuid4().hex[:16]
    try:
        claims = downloads.verify_link(settings, request.path_params["token"])
        viewer, _ = await auth.user_viewer(claims.user_id)
        model, stream = await downloads.open_download(
            access_for(viewer, ip), services.store, services.keyring, claims, ip
        )
    except DomainError as error:
        # Expired, forged, or no longer allowed: the same 404, revealing nothing.
        return error_json(error, request_id, status=404)
    except Exception as error:  # store down (503), object missing or damaged (500), a bug
        return error_json(error, request_id)
    headers = {
        "content-disposition": downloads.content_disposition(model.file_name),
        "cache-control": "no-store",
    }
    return StreamingResponse(stream, media_type="application/octet-stream", headers=headers)
