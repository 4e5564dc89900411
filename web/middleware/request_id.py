"""X-Request-ID: accepted from the client (when it looks like an id), else made here;
returned on every response, set for the logs (runtime/logs.py) and for GraphQL
errors' `extensions.requestId`; one access line per request, in JSON.

The access line names the route, never the raw path: a download link's token is
part of its path (/files/<token>).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from runtime.logs import request_id_var
from web.middleware.base import HttpMiddleware

HEADER = "X-Request-ID"
_ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{8,64}")
_ROUTES = ("/graphql", "/healthz", "/metrics")

log = logging.getLogger("printvault.access")


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def route_of(path: str) -> str:
    if path in _ROUTES:
        return path
    if path.startswith("/files/"):
        return "/files/{token}"
    if path.startswith("/graphiql"):
        return "/graphiql"
    return "other"


class RequestId(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        offered = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                offered = value.decode("latin-1")
                break
        request_id = offered if _ACCEPTED.fullmatch(offered) else new_request_id()
        scope["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "route": route_of(scope.get("path", "")),
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)
