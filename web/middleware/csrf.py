"""The CSRF guard for non-JSON posts.

A browser sends JSON cross-site only after a CORS preflight, but it sends
multipart forms freely; so, as Apollo Server does, a non-JSON POST must carry
a header that a plain form cannot set.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from web.responses import bad_request


class RequirePreflightHeader:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and needs_preflight_header(scope):
            response = bad_request("This request needs an Apollo-Require-Preflight header.")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def needs_preflight_header(scope: Scope) -> bool:
    if scope["method"] != "POST":
        return False
    headers = Headers(scope=scope)
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return False
    return not (headers.get("apollo-require-preflight") or headers.get("x-apollo-operation-name"))
