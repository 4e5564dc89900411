"""Security headers on every response; a response that sets its own CSP keeps it."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from web.middleware.base import HttpMiddleware

API_CSP = "default-src 'none'; frame-ancestors 'none'"
COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
HSTS = "max-age=63072000; includeSubDomains"


class SecurityHeaders(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # GraphiQL's page sets a nonce CSP of its own (web/endpoints/graphiql.py).
                own_csp = "content-security-policy" in headers
                for key, value in COMMON.items():
                    headers.append(key, value)
                if not own_csp:
                    headers.append("content-security-policy", API_CSP)
                if tls:
                    headers.append("strict-transport-security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
