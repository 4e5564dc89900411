"""/files/<token>: check the link and the caller's right, decrypt, stream (HTTP Range too)."""

from __future__ import annotations

import re
import uuid

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from domain import auth, downloads
from domain.errors import DomainError
from web.access import access_for, request_ip
from web.responses import error_json

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


async def download(request: Request) -> Response:
    settings = request.app.state.settings
    services = request.app.state.services
    ip = request_ip(request)
    request_id = uuid.uuid4().hex[:16]
    try:
        claims = downloads.verify_link(settings, request.path_params["token"])
        viewer, _ = await auth.link_viewer(
            settings, claims.user_id, claims.session_id, claims.api_token_id
        )
        model, stream = await downloads.open_download(
            access_for(viewer, ip), services.store, services.keyring, claims, ip
        )
    except DomainError as error:
        # Expired, forged, logged out, or no longer allowed: the same 404, revealing nothing.
        return error_json(error, request_id, status=404)
    except Exception as error:  # store down (503), object missing or damaged (500), a bug
        return error_json(error, request_id)
    size = model.file_size
    etag = f'"{model.id}"'  # a model's file never changes
    headers = {
        "content-disposition": downloads.content_disposition(model.file_name),
        "cache-control": "no-store",
        "accept-ranges": "bytes",
        "etag": etag,
    }
    try:
        wanted = _wanted_range(request, size, etag)
    except _Unsatisfiable:
        await stream.aclose()  # type: ignore[attr-defined]
        return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
    if wanted is None:
        headers["content-length"] = str(size)
        return StreamingResponse(stream, media_type="application/octet-stream", headers=headers)
    start, end = wanted
    headers["content-range"] = f"bytes {start}-{end}/{size}"
    headers["content-length"] = str(end - start + 1)
    return StreamingResponse(
        downloads.byte_range(stream, start, end),
        status_code=206,
        media_type="application/octet-stream",
        headers=headers,
    )


class _Unsatisfiable(Exception):
    """The range starts past the end of the file: 416."""


def _wanted_range(request: Request, size: int, etag: str) -> tuple[int, int] | None:
    """One byte range of RFC 9110 (`bytes=a-b`, `a-`, `-n`), or None for the whole file
    (no header, several ranges, or an If-Range that no longer matches)."""
    header = request.headers.get("range")
    if not header or request.headers.get("if-range", etag) != etag:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - length), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # not a valid range: ignored (RFC 9110, 14.2)
    if start >= size:
        raise _Unsatisfiable
    end = min(int(last), size - 1) if last else size - 1
    return start, end
