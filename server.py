"""The ASGI app (Starlette) and the command line.

Routes: /graphql (queries, mutations, uploads, GraphiQL), /files/<token>
(downloads), /healthz. Middleware: security headers, the CSRF guard for
non-JSON posts, the caller's IP. The lifespan opens the database (migrating
it), the object store and the job engine, and closes them.

Commands: serve (default), migrate, create-staff EMAIL, worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import ssl
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from tortoise import connections

from domain import auth, backups, downloads, key_rotation, policy
from domain.errors import DomainError, ServiceUnavailable
from domain.jobs import run_worker
from domain.network import client_ip
from domain.services import close_services, open_services
from domain.settings import Settings, SettingsError, load_settings
from resolvers.loaders import Loaders
from schema.app_schema import build_schema
from schema.context import Context
from schema.errors import error_response
from schema.multipart import handle_multipart
from storage import db
from storage.backup import BackupError
from storage.crypto import IntegrityError, KeyRing
from storage.objects import ObjectMissing, StoreUnavailable
from web.json_body import load_json
from web.middleware.body_limit import BodyLimit
from web.middleware.early_close import EarlyClose
from web.middleware.no_store import NoStore
from web.middleware.stray_cancellation import StrayCancellation
from web.protocol import protocol_for

log = logging.getLogger("printvault")

API_CSP = "default-src 'none'; frame-ancestors 'none'"
# GraphiQL is a page of its own that loads its scripts from unpkg.
GRAPHIQL_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://unpkg.com; "
    "style-src 'self' 'unsafe-inline' https://unpkg.com; img-src 'self' data: https:; "
    "font-src https://unpkg.com; connect-src 'self'; frame-ancestors 'none'"
)


class GraphQLApp(GraphQL):
    """Strawberry's ASGI view with our context: caller, IP, loaders."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            build_schema(production=settings.is_production),
            # The page itself is static and reveals nothing; in production only staff
            # may introspect, so only staff get a working GraphiQL.
            graphql_ide="graphiql",
            allow_queries_via_get=False,
            # Multipart requests never reach strawberry: it would spool files to disk.
            multipart_uploads_enabled=False,
        )
        self.settings = settings

    async def get_context(self, request: Request, response: Any) -> Context:
        context = Context(
            settings=self.settings,
            services=getattr(request.app.state, "services", None),
            ip=request.scope.get("client_ip"),
            request=request,
            response=response,
        )
        token = _bearer_token(request.headers.get("authorization"))
        if token:
            try:
                context.set_viewer(*await auth.authenticate(self.settings, token))
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
    """/graphql: multipart uploads go to our streaming handler, the rest to strawberry."""

    def __init__(self, settings: Settings) -> None:
        self.graphql = GraphQLApp(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
                await _bad_request(problem)(scope, receive, send)
                return
            receive = _replay(body)
        await self.graphql(scope, receive, _coded_errors(send))


def _json_object_problem(body: bytes) -> str | None:
    try:
        value = load_json(body)
    except DomainError as error:  # nested too deeply
        return error.message
    except ValueError:
        value = None
    return None if isinstance(value, dict) else "The body must be a JSON object with a `query`."


def _bad_request(message: str) -> JSONResponse:
    error = {"message": message, "extensions": {"code": "BAD_USER_INPUT"}}
    return JSONResponse({"data": None, "errors": [error]}, status_code=400)


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
    """Strawberry answers envelope errors (no query, unknown operationName, ...) with a
    text/plain 400; clients get the contract's JSON error with a code instead."""
    plain_400 = False

    async def send_coded(message: Message) -> None:
        nonlocal plain_400
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            plain_400 = message["status"] == 400 and headers.get(b"content-type", b"").startswith(
                b"text/plain"
            )
            if plain_400:
                return  # sent below, with the JSON body
        elif message["type"] == "http.response.body" and plain_400:
            text = message.get("body", b"").decode("utf-8", "replace")
            response = _bad_request(text or "Bad request.")
            await send(
                {"type": "http.response.start", "status": 400, "headers": response.raw_headers}
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        await send(message)

    return send_coded


async def download(request: Request) -> Response:
    """/files/<token>: check the link and the caller's right, decrypt, stream."""
    settings: Settings = request.app.state.settings
    services = request.app.state.services
    ip = request.scope.get("client_ip")
    try:
        claims = downloads.verify_link(settings, request.path_params["token"])
        viewer, _ = await auth.user_viewer(claims.user_id)
        access = policy.Access(viewer, Loaders().providers_of_model.load)
        model, stream = await downloads.open_download(
            access, services.store, services.keyring, claims, ip
        )
    except DomainError as error:
        return JSONResponse({"error": error.message, "code": error.code}, status_code=404)
    except (ObjectMissing, IntegrityError):
        log.error("download of a model whose object is missing or damaged", exc_info=True)
        return JSONResponse({"error": "The file is not available.", "code": "INTERNAL"}, 500)
    except StoreUnavailable:
        return JSONResponse({"error": "Storage is unavailable; retry.", "code": "INTERNAL"}, 503)
    headers = {
        "content-disposition": downloads.content_disposition(model.file_name),
        "cache-control": "no-store",
    }
    return StreamingResponse(stream, media_type="application/octet-stream", headers=headers)


def _bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class RequestGuard:
    """Security headers, the caller's IP, and the CSRF guard for multipart posts.

    A browser sends JSON cross-site only after a CORS preflight, but it sends
    multipart forms freely; so, as Apollo Server does, a non-JSON POST must carry
    a header that a plain form cannot set.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        peer = scope["client"][0] if scope.get("client") else None
        scope["client_ip"] = client_ip(
            peer, request.headers.get("x-forwarded-for"), self.settings.trusted_proxies
        )
        if _needs_preflight_header(request):
            response = JSONResponse(
                {
                    "errors": [
                        {
                            "message": "This request needs an Apollo-Require-Preflight header.",
                            "extensions": {"code": "BAD_USER_INPUT"},
                        }
                    ]
                },
                status_code=400,
            )
            await response(scope, receive, self._with_headers(send, scope))
            return
        await self.app(scope, receive, self._with_headers(send, scope))

    def _with_headers(self, send: Send, scope: Scope) -> Send:
        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                is_html = any(k == b"content-type" and b"text/html" in v for k, v in headers)
                for key, value in _security_headers(is_html, tls):
                    headers.append((key, value))
                message["headers"] = headers
            await send(message)

        return send_with_headers


def _needs_preflight_header(request: Request) -> bool:
    if request.method != "POST":
        return False
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return False
    return not (
        request.headers.get("apollo-require-preflight")
        or request.headers.get("x-apollo-operation-name")
    )


def _security_headers(is_html: bool, tls: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", (GRAPHIQL_CSP if is_html else API_CSP).encode()),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if tls:
        headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    return headers


async def healthz(request: Request) -> Response:
    checks = {"database": await _database_ok(), "storage": await _storage_ok(request)}
    ok = all(checks.values())
    return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)


async def _database_ok() -> bool:
    try:
        await asyncio.wait_for(connections.get("default").execute_query("SELECT 1"), 3)
    except Exception:  # any failure means "not healthy"; the reason goes to the log
        log.warning("health check: database unavailable", exc_info=True)
        return False
    return True


async def _storage_ok(request: Request) -> bool:
    services = getattr(request.app.state, "services", None)
    if services is None:
        return False
    try:
        await asyncio.wait_for(services.store.ping(), 5)
    except Exception:  # any failure means "not healthy"; the reason goes to the log
        log.warning("health check: object store unavailable", exc_info=True)
        return False
    return True


async def _unexpected(request: Request, error: Exception) -> Response:
    """Last resort: still a JSON error with a code, and no trace for the client."""
    body, status = error_response(error, uuid.uuid4().hex[:16])
    return JSONResponse(body, status_code=status)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.connect(settings.database_url)
        try:
            app.state.services = await open_services(settings)
            try:
                yield
            finally:
                await close_services(app.state.services)
        finally:
            await db.disconnect()

    app = Starlette(
        routes=[
            Route("/graphql", GraphQLEndpoint(settings), methods=["GET", "POST"]),
            Route("/files/{token}", download, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        middleware=[
            Middleware(EarlyClose),
            Middleware(NoStore),
            Middleware(RequestGuard, settings=settings),
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
    app.state.services = None
    return app


# --- command line ------------------------------------------------------------------------


# Forward secrecy and AEAD ciphers only (what SSL Labs grades A); TLS 1.3 suites are fixed.
TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1"


def tls_context(config: uvicorn.Config, default_factory) -> ssl.SSLContext:
    """uvicorn's context, restricted to TLS 1.2 and 1.3 with strong ciphers."""
    context = default_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def _serve(settings: Settings) -> None:
    tls = bool(settings.tls_certfile and settings.tls_keyfile)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # The access log would print request paths; it is off so no token in a URL is logged.
        access_log=False,
        proxy_headers=False,
        http=protocol_for(settings),  # h11 with header and body read deadlines
        ssl_certfile=settings.tls_certfile if tls else None,
        ssl_keyfile=settings.tls_keyfile if tls else None,
        ssl_context_factory=tls_context if tls else None,
    )
    uvicorn.Server(config).run()


async def _migrate(settings: Settings) -> None:
    await db.migrate(settings.database_url)
    await db.disconnect()  # the migration engine leaves its connection open
    print("database is up to date")


async def _create_staff(settings: Settings, email: str, first: str, last: str) -> None:
    from domain.accounts import create_staff

    password = _read_password()
    await db.connect(settings.database_url)
    try:
        _, uri = await create_staff(settings, email, password, first, last)
    finally:
        await db.disconnect()
    print("Staff account created. Scan this in an authenticator app; it is shown once:")
    print(uri)


async def _rotate_keys(settings: Settings) -> None:
    ring = KeyRing(settings.master_keys, settings.active_key_id)
    await db.connect(settings.database_url)
    try:
        changed = await key_rotation.rotate_keys(ring)
        in_use = await key_rotation.keys_in_use()
    finally:
        await db.disconnect()
    print(f"re-wrapped {changed} data keys under {ring.active_key_id}")
    print("data keys per master key:", ", ".join(f"{k}={n}" for k, n in in_use.items()) or "none")


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="server.py", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the API (default)")
    commands.add_parser("migrate", help="apply database migrations")
    staff = commands.add_parser("create-staff", help="create a staff account (password on stdin)")
    staff.add_argument("email")
    staff.add_argument("--first-name", default="Staff")
    staff.add_argument("--last-name", default="Member")
    commands.add_parser("worker", help="run analysis jobs from JOB_BROKER_URL (production)")
    commands.add_parser("rotate-keys", help="re-wrap data keys under the first MASTER_KEYS key")
    commands.add_parser("backup", help="back up the database, encrypted, into the object store")
    restore = commands.add_parser("restore", help="restore a backup into an EMPTY database")
    restore.add_argument("backup", help="object key, e.g. backups/20260101T030000Z-sqlite.pvbak")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings()
        if args.command in (None, "serve"):
            _serve(settings)
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "backup":
            print(asyncio.run(backups.run_backup(settings)))
        elif args.command == "restore":
            asyncio.run(backups.run_restore(settings, args.backup))
            print(f"restored {args.backup}; now run `server.py migrate`, then start the servers")
        elif args.command == "rotate-keys":
            asyncio.run(_rotate_keys(settings))
        elif args.command == "worker":
            asyncio.run(run_worker(settings))
        elif args.command == "create-staff":
            asyncio.run(_create_staff(settings, args.email, args.first_name, args.last_name))
    except (SettingsError, DomainError, BackupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
