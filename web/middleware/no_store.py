"""`Cache-Control: no-store` on every answer that does not set its own.

Any /graphql answer may carry a session or API token (signUp, logIn,
acceptInvitation, createApiToken), a TOTP secret, recovery codes, a signed download
link or personal data, and which ones do depends on the document, not the URL. So
the rule is not "answers that carry secrets" (which would have to be kept in step
with the schema) but "no answer of this API is stored by a browser or a proxy".
Nothing is lost: answers are per caller, POSTs are not cached usefully, and the
GraphiQL page is small. Downloads already set their own no-store.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from web.middleware.base import HttpMiddleware


class NoStore(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "cache-control" not in headers:
                    headers.append("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_no_store)
