"""The shape every middleware here shares: plain ASGI, acting on HTTP requests only.

Lifespan and websocket scopes pass straight through; a subclass writes `handle`
for the HTTP case alone (Starlette's pure-ASGI middleware pattern, without its
BaseHTTPMiddleware, which would buffer streamed bodies).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
