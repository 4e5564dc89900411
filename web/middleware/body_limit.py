"""Request bodies are capped before they are read (PAYLOAD_TOO_LARGE, 413).

A declared Content-Length over the cap is refused at once, without reading a byte
of the body; a chunked body is counted as it streams in and refused the moment it
passes the cap, so the server never holds more than the cap plus one chunk.
JSON bodies get MAX_REQUEST_BYTES; multipart uploads get the file cap plus the cap
on their text parts (the multipart handler enforces each of those on its own).
The refusal also ends the connection: see early_close.py.
"""

from __future__ import annotations

import uuid

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.errors import PayloadTooLarge
from runtime.settings import Settings
from web.responses import error_response

MULTIPART_FRAMING = 64 * 1024  # boundaries and part headers around the file


class BodyTooLarge(PayloadTooLarge):
    """Raised from `receive` when a streamed body passes the cap."""


class BodyLimit:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.json_cap = settings.max_request_bytes
        self.multipart_cap = (
            settings.max_upload_bytes + settings.max_multipart_fields_bytes + MULTIPART_FRAMING
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cap = self._cap(headers)
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            await _too_large(cap)(scope, receive, send)
            return
        body = _BodyProgress(cap)
        try:
            await self.app(scope, body.counting(receive), body.noting_answer(send))
        except BodyTooLarge:
            if body.answered:
                raise
            await _too_large(cap)(scope, receive, send)

    def _cap(self, headers: Headers) -> int:
        multipart = headers.get("content-type", "").lower().startswith("multipart/")
        return self.multipart_cap if multipart else self.json_cap


class _BodyProgress:
    """How much of one request's body was read, and whether it was answered."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.received = 0
        self.answered = False

    def counting(self, receive: Receive) -> Receive:
        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.cap:
                    raise BodyTooLarge(f"The request body is larger than {self.cap} bytes.")
            return message

        return counted

    def noting_answer(self, send: Send) -> Send:
        async def sent(message: Message) -> None:
            self.answered = self.answered or message["type"] == "http.response.start"
            await send(message)

        return sent


def _too_large(cap: int) -> JSONResponse:
    error = PayloadTooLarge(f"The request body is larger than {cap} bytes.", limit=cap)
    body, status = error_response(error, uuid.uuid4().hex[:16])
    return JSONResponse(body, status_code=status)
