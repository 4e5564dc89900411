"""The one shape of an error body, for HTTP endpoints and GraphQL alike (API.md, "Errors").

`{"data": null, "errors": [{"message": ..., "extensions": {"code": ...}}]}`:
the JSON body check, the rewrite of strawberry's plain-text 400s, the download
endpoint, the multipart transport and the GraphQL error extension all build
their errors here. Domain errors keep their message and code; anything else is
masked as INTERNAL with a request id, the trace goes to the log only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse

from domain.errors import DomainError
from storage.objects import StoreUnavailable

log = logging.getLogger("printvault.errors")

# HTTP statuses for errors answered outside a GraphQL result; the rest are 400.
_STATUSES = {"PAYLOAD_TOO_LARGE": 413, "UNAUTHENTICATED": 401, "RATE_LIMITED": 429}


@dataclass(frozen=True)
class Described:
    """What a client may be told about a failure."""

    message: str
    extensions: dict[str, Any] = field(default_factory=dict)
    status: int = 400


def describe(error: BaseException, request_id: str) -> Described:
    """Message, extensions (with `code`) and HTTP status of any failure."""
    if isinstance(error, DomainError):
        return Described(
            error.message,
            {"code": error.code, **error.extensions},
            _STATUSES.get(error.code, 400),
        )
    masked = {"code": "INTERNAL", "requestId": request_id}
    if isinstance(error, StoreUnavailable):
        log.warning("request %s: object store unavailable: %s", request_id, error)
        message = f"Storage is unavailable; retry later (request id {request_id})."
        return Described(message, masked, 503)
    log.error("request %s: unexpected error", request_id, exc_info=error)
    return Described(f"Internal error (request id {request_id}).", masked, 500)


def error_body(message: str, extensions: dict[str, Any]) -> dict[str, Any]:
    """The body of a failed request: no data, one coded error."""
    return {"data": None, "errors": [{"message": message, "extensions": extensions}]}


def error_response(error: BaseException, request_id: str) -> tuple[dict[str, Any], int]:
    """Body and HTTP status for a failure outside GraphQL execution."""
    described = describe(error, request_id)
    return error_body(described.message, described.extensions), described.status


def error_json(
    error: BaseException, request_id: str, *, status: int | None = None
) -> JSONResponse:
    """The JSON response for `error`; `status` overrides the usual one. RATE_LIMITED
    carries Retry-After, as HTTP clients expect."""
    described = describe(error, request_id)
    retry_after = described.extensions.get("retryAfter")
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse(
        error_body(described.message, described.extensions),
        status_code=status or described.status,
        headers=headers,
    )


def bad_request(message: str) -> JSONResponse:
    """400 BAD_USER_INPUT, for requests refused before GraphQL runs."""
    return JSONResponse(error_body(message, {"code": "BAD_USER_INPUT"}), status_code=400)
