"""/graphql: multipart uploads go to our streaming handler, the rest to strawberry.

JSON bodies are checked before strawberry sees them, and strawberry's plain-text
400s (no query, unknown operationName, ...) are rewritten into the contract's
JSON error with a code.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from domain import auth
from domain.errors import DomainError, ServiceUnavailable
from runtime.settings import Settings
from schema.app_schema import build_schema
from schema.context import Context
from storage.models import Company
from web.access import request_ip
from web.json_body import load_json
from web.multipart import handle_multipart
from web.responses import bad_request

log = logging.getLogger("printvault")


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry's ASGI view with our context: caller, IP, loaders."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            build_schema(production=settings.is_production),
            # Strawberry's page loads GraphiQL from a CDN; ours is web/endpoints/graphiql.py.
            graphql_ide=None,
            allow_queries_via_get=False,
            # Multipart requests never reach strawberry: it would spool files to disk.
            multipart_uploads_enabled=False,
            # Only the maintained protocol; the caller authenticates in connection_init.
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=10),
        )
        self.settings = settings

    async def on_ws_connect(self, context: Context) -> None:
        """graphql-transport-ws `connection_init`: {"Authorization": "Bearer <token>"}.

        A missing or invalid token closes the socket (4403): a subscription is never
        answered for an anonymous caller. The token is kept to re-check it per event.
        """
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        header = params.get("Authorization") or params.get("authorization")
        token = bearer_token(header if isinstance(header, str) else None)
        if not token:
            raise ConnectionRejectionError()
        try:
            context.set_viewer(*await auth.authenticate(self.settings, token))
        except Exception as error:  # invalid token, or the database is down
            raise ConnectionRejectionError() from error
        context.token = token

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        context = Context(
            settings=self.settings,
            services=getattr(request.app.state, "services", None),
            ip=request_ip(request),
            request=request,
            response=response,
        )
        token = bearer_token(request.headers.get("authorization"))
        if token:
            try:
                context.set_viewer(*await auth.authenticate(self.settings, token))
                _prime_company(context)
            except DomainError as error:
                context.auth_error = error
            except Exception:  # the database is down: answer with a code, not a 500 page
                log.warning("request %s: authentication failed", context.request_id, exc_info=True)
                context.auth_error = ServiceUnavailable(
                    f"The service is temporarily unavailable (request id {context.request_id}).",
                    requestId=context.request_id,
                )
        return context


class GraphQLEndpoint:
    def __init__(self, settings: Settings) -> None:
        self.graphql = GraphQLApp(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.graphql(scope, receive, send)
            return
        request = Request(scope, receive)
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and content_type.startswith("multipart/"):
            context = await self.graphql.get_context(request, None)
            response = await handle_multipart(request, self.graphql.schema, context)
            await response(scope, receive, send)
            return
        if request.method == "POST":
            body = await request.body()
            problem = _json_object_problem(body)
            if problem:
                await bad_request(problem)(scope, receive, send)
                return
            receive = _replay(body)
        await self.graphql(scope, receive, _coded_errors(send))


def _prime_company(context: Context) -> None:
    """The caller's company was read with the session: the loader need not ask again."""
    related = getattr(context.user, "company", None)
    if isinstance(related, Company):
        context.loaders.company.prime(related.id, related)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _json_object_problem(body: bytes) -> str | None:
    try:
        value = load_json(body)
    except DomainError as error:  # nested too deeply
        return error.message
    except ValueError:
        value = None
    return None if isinstance(value, dict) else "The body must be a JSON object with a `query`."


def _replay(body: bytes) -> Receive:
    """The request body again, for strawberry, after we have read it."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _coded_errors(send: Send) -> Send:
    """Strawberry answers envelope errors with a text/plain 400; clients get the
    contract's JSON error with a code instead."""
    plain_400 = False

    async def send_coded(message: Message) -> None:
        nonlocal plain_400
        if message["type"] == "http.response.start":
            content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
            plain_400 = message["status"] == 400 and content_type.startswith("text/plain")
            if plain_400:
                return  # sent below, with the JSON body
        elif message["type"] == "http.response.body" and plain_400:
            text = message.get("body", b"").decode("utf-8", "replace")
            response = bad_request(text or "Bad request.")
            await send(
                {"type": "http.response.start", "status": 400, "headers": response.raw_headers}
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        await send(message)

    return send_coded
