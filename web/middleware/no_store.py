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

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class NoStore:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(key.lower() == b"cache-control" for key, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_no_store)
