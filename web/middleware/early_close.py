"""An answer given before the request body was fully received ends the connection.

Otherwise uvicorn keeps reading, and discarding, the rest of a body the app has
already refused (too large, no CSRF header, unknown route) for as long as the client
sends it. `Connection: close` makes uvicorn close the connection after the answer.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from web.middleware.base import HttpMiddleware


class EarlyClose(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "").strip()
        complete = declared in ("", "0") and "transfer-encoding" not in headers

        async def tracking_receive() -> Message:
            nonlocal complete
            message = await receive()
            if message["type"] == "http.request":
                complete = not message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not complete:
                MutableHeaders(scope=message).append("connection", "close")
            await send(message)

        await self.app(scope, tracking_receive, closing_send)
