"""A CancelledError that is not a cancellation of the request answers JSON too.

CancelledError is a BaseException, so Starlette's last-resort handler (which
catches Exception) lets it through and uvicorn answers a plain-text 500. One that
rises from a driver or a timeout inside the request's own work (the issue saw it
while an error was being handled) is a failure like any other: INTERNAL, a request
id, the trace in the log. A real cancellation of the request's task (the server
shutting down) is passed on untouched: the task must stop.
"""

from __future__ import annotations

import asyncio
import uuid

from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from web.middleware.base import HttpMiddleware
from web.responses import error_response


class StrayCancellation(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError as cancelled:
            task = asyncio.current_task()
            if started or (task is not None and task.cancelling()):
                raise
            body, status = error_response(cancelled, uuid.uuid4().hex[:16])
            await JSONResponse(body, status_code=status)(scope, receive, send)
