"""The ASGI app (Starlette): routes, middleware, lifespan.

Routes: /graphql (queries, mutations, uploads), /graphiql (staff's IDE), /files/<token>
(downloads), /healthz. Middleware, outermost first: security headers, the
caller's IP, the CSRF guard for non-JSON posts, CORS. The lifespan opens the
database (migrating it), the object store and the job engine, and closes them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from runtime.services import close_services, open_services, sealing_keys
from runtime.settings import Settings, load_settings
from storage import db
from web.endpoints import graphiql
from web.endpoints.downloads import download
from web.endpoints.graphql import GraphQLEndpoint
from web.endpoints.healthz import healthz
from web.endpoints.metrics import metrics_endpoint
from web.endpoints.previews import preview
from web.middleware.body_limit import BodyLimit
from web.middleware.client_ip import ClientIp
from web.middleware.csrf import RequirePreflightHeader
from web.middleware.early_close import EarlyClose
from web.middleware.no_store import NoStore
from web.middleware.request_id import RequestId
from web.middleware.security_headers import SecurityHeaders
from web.middleware.stray_cancellation import StrayCancellation
from web.responses import error_json


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.connect(settings.database_url, sealing_keys(settings))
        try:
            app.state.services = await open_services(settings)
            try:
                yield
            finally:
                await close_services(app.state.services)
        finally:
            await db.disconnect()

    graphql = GraphQLEndpoint(settings)
    app = Starlette(
        routes=[
            Route(
                "/graphql",
                graphiql.redirect_browsers(graphql, settings),
                methods=["GET", "POST"],
            ),
            *graphiql.routes(settings),
            WebSocketRoute("/graphql", graphql),  # subscriptions: graphql-transport-ws
            Route("/files/{token}", download, methods=["GET"]),
            Route("/previews/{token}", preview, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        middleware=[
            Middleware(EarlyClose),
            Middleware(RequestId),  # every answer carries the id; one access line each
            Middleware(NoStore),
            Middleware(SecurityHeaders),
            Middleware(ClientIp, trusted_proxies=settings.trusted_proxies),
            Middleware(RequirePreflightHeader),
            Middleware(StrayCancellation),
            Middleware(BodyLimit, settings=settings),
            # Only configured origins may call from a browser; none by default.
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["POST", "GET"],
                allow_headers=["Authorization", "Content-Type", "Apollo-Require-Preflight"],
                max_age=600,
            ),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: _unexpected},
    )
    app.state.settings = settings
    app.state.graphql_schema = graphql.graphql.schema
    app.state.services = None
    return app


async def _unexpected(request: Request, error: Exception) -> Response:
    """Last resort: still a JSON error with a code, and no trace for the client."""
    return error_json(error, request.scope.get("request_id") or uuid.uuid4().hex[:16])
