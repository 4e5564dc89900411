"""GraphiQL, served from our own origin with a strict CSP.

The assets (GraphiQL, React, ReactDOM; exact versions in
web/graphiql_assets/package-lock.json) are installed from the npm registry by
`make assets`, never committed and never fetched at request time. Only the files
named in ASSETS are served, from memory, each with its Subresource-Integrity hash
on the page. The page's CSP names no other origin and has no 'unsafe-inline':
scripts and styles run only with the response's nonce (or, for the style sheets,
from 'self'). The boot script hands GraphiQL an in-memory storage, so request
headers (a staff member's Authorization) never reach localStorage.

Production serves GraphiQL only when `GRAPHIQL=on` (see the README): the page is
the same for everyone, and in production only staff may introspect, so only staff
get a working GraphiQL.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import html
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from runtime.settings import Settings

ASSET_DIR = Path(__file__).resolve().parents[1] / "graphiql_assets"
PAGE_PATH = "/graphiql"
STATIC_PATH = "/graphiql/static"
JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"

# URL name -> (file under ASSET_DIR, media type). Nothing else is ever served.
ASSETS: dict[str, tuple[str, str]] = {
    "react.js": ("node_modules/react/umd/react.production.min.js", JS),
    "react-dom.js": ("node_modules/react-dom/umd/react-dom.production.min.js", JS),
    "graphiql.js": ("node_modules/graphiql/graphiql.min.js", JS),
    "graphiql.css": ("node_modules/graphiql/graphiql.min.css", CSS),
    "page.css": ("page.css", CSS),
    "boot.js": ("boot.js", JS),
}
# In page order: React before ReactDOM before GraphiQL before our boot script.
STYLES = ("graphiql.css", "page.css")
SCRIPTS = ("react.js", "react-dom.js", "graphiql.js", "boot.js")


def content_security_policy(nonce: str) -> str:
    """No third-party origin and no 'unsafe-inline'. GraphiQL's style sheet embeds its
    fonts and a few icons as data: URLs; GraphiQL's dialogs add a <style> that the boot
    script stamps with the nonce. Style *attributes* set through the DOM (React's
    `style` prop, CodeMirror) are CSSOM writes, which CSP does not govern."""
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            f"style-src 'self' 'nonce-{nonce}'",
            "img-src 'self' data:",
            "font-src data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    media_type: str
    integrity: str  # sha384-..., for the page's integrity attribute
    version: str  # part of the URL, so that a new install is never taken from a stale cache


class AssetsMissing(RuntimeError):
    """`make assets` has not run (or node_modules was removed)."""


class AssetStore:
    """The files of ASSETS, read once, kept in memory with their hashes."""

    def __init__(self, root: Path = ASSET_DIR) -> None:
        self.root = root
        self._assets: dict[str, Asset] | None = None

    async def get(self) -> dict[str, Asset]:
        """Read (and gzip) once, in a thread: ~1.6 MB would stall the event loop. Kept
        only when complete, so `make assets` run later is picked up without a restart."""
        if self._assets is None:
            self._assets = await asyncio.to_thread(self._load_all)
        return self._assets

    def _load_all(self) -> dict[str, Asset]:
        return {name: self._load(*entry) for name, entry in ASSETS.items()}

    def _load(self, relative: str, media_type: str) -> Asset:
        path = self.root / relative
        try:
            body = path.read_bytes()
        except FileNotFoundError as error:
            raise AssetsMissing(
                f"{relative} is missing under {self.root}; run `make assets`"
            ) from error
        digest = hashlib.sha384(body).digest()
        integrity = "sha384-" + base64.b64encode(digest).decode()
        return Asset(body, gzip.compress(body, 6), media_type, integrity, digest.hex()[:16])


def render_page(assets: dict[str, Asset], nonce: str, endpoint: str) -> str:
    def url(name: str) -> str:
        return f"{STATIC_PATH}/{name}?v={assets[name].version}"

    styles = "\n".join(
        f'<link rel="stylesheet" href="{url(n)}" integrity="{assets[n].integrity}" '
        f'nonce="{nonce}">'
        for n in STYLES
    )
    scripts = "\n".join(
        f'<script src="{url(n)}" integrity="{assets[n].integrity}" nonce="{nonce}"></script>'
        for n in SCRIPTS
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>PrintVault GraphiQL</title>
<link rel="icon" href="data:,">
{styles}
</head>
<body>
<div id="graphiql" data-endpoint="{html.escape(endpoint)}">Loading...</div>
{scripts}
</body>
</html>
"""


class GraphiQLEndpoints:
    """The page (a fresh nonce per response, never cached) and its static files."""

    def __init__(self, store: AssetStore, endpoint: str = "/graphql") -> None:
        self.store = store
        self.endpoint = endpoint

    async def page(self, request: Request) -> Response:
        try:
            assets = await self.store.get()
        except AssetsMissing as error:
            return PlainTextResponse(f"GraphiQL is not installed: {error}.", status_code=503)
        nonce = secrets.token_urlsafe(18)
        headers = {
            "content-security-policy": content_security_policy(nonce),
            "cache-control": "no-store",
        }
        return Response(
            render_page(assets, nonce, self.endpoint), media_type="text/html", headers=headers
        )

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            asset = (await self.store.get()).get(name) if name in ASSETS else None
        except AssetsMissing as error:
            return PlainTextResponse(f"GraphiQL is not installed: {error}.", status_code=503)
        if asset is None:
            return PlainTextResponse("Not Found", status_code=404)
        headers = {
            "cache-control": "public, max-age=31536000, immutable",
            "vary": "Accept-Encoding",
            # Our pages only: no other site may load these files into its own.
            "cross-origin-resource-policy": "same-origin",
        }
        body = asset.body
        if "gzip" in request.headers.get("accept-encoding", ""):
            body, headers["content-encoding"] = asset.gzipped, "gzip"
        return Response(body, media_type=asset.media_type, headers=headers)


def routes(settings: Settings, store: AssetStore | None = None) -> list[Route]:
    """The GraphiQL routes, or none at all when GraphiQL is off (production default)."""
    if not settings.graphiql:
        return []
    endpoints = GraphiQLEndpoints(store or AssetStore())
    return [
        Route(PAGE_PATH, endpoints.page, methods=["GET"]),
        Route(STATIC_PATH + "/{name}", endpoints.static, methods=["GET"]),
    ]


class RedirectBrowsers:
    """A browser opening /graphql (the address in the README) lands on GraphiQL; every
    other request goes to the API unchanged. A class, not a function: Starlette would
    take a plain function for a request -> response endpoint."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        wants_page = (
            request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
            and not request.query_params
        )
        if wants_page:
            await RedirectResponse(PAGE_PATH, status_code=307)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def redirect_browsers(app: ASGIApp, settings: Settings) -> ASGIApp:
    """/graphql's endpoint: with GraphiQL on, browsers are sent to its page."""
    return RedirectBrowsers(app) if settings.graphiql else app
