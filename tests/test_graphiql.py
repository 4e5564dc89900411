"""GraphiQL's page and assets over HTTP (in process): our own origin only, a strict CSP
with a fresh nonce, integrity hashes that match what is served, and GraphiQL off in
production unless GRAPHIQL=on. What a person sees in a browser is in
test_graphiql_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from runtime.settings import Settings, SettingsError, load_settings
from server import create_app
from web.endpoints import graphiql
from web.endpoints.graphiql import ASSET_DIR, ASSETS, AssetStore

SECRETS = {
    "MASTER_KEYS": "k1:" + base64.b64encode(b"k" * 32).decode(),
    "SECRET_KEY": base64.b64encode(b"s" * 32).decode(),
}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app (its middleware adds the other security headers); GraphiQL's routes
    need neither the database nor the services."""
    async with _client(create_app(settings)) as client:
        yield client


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def _directives(policy: str) -> dict[str, list[str]]:
    parts = (part.split() for part in policy.split(";") if part.strip())
    return {name: sources for name, *sources in parts}


async def test_page_csp_names_no_other_origin_and_no_unsafe_inline(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/graphiql")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    policy = response.headers["content-security-policy"]
    assert len(response.headers.get_list("content-security-policy")) == 1
    directives = _directives(policy)
    nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]{20,})'", directives["script-src"][0])
    assert nonce, policy
    assert directives["script-src"] == [f"'nonce-{nonce.group(1)}'"]
    assert directives["default-src"] == ["'none'"]
    assert directives["connect-src"] == ["'self'"]
    allowed = {"'self'", "'none'", "data:", f"'nonce-{nonce.group(1)}'"}
    for name, sources in directives.items():
        assert set(sources) <= allowed, f"{name}: {sources}"
    assert "unsafe" not in policy and "http" not in policy and "*" not in policy

    page = response.text
    tags = re.findall(r"<(?:script|link)\b[^>]*>", page)
    assert len(tags) == 7  # the icon, two style sheets, four scripts
    for tag in re.findall(r"<script\b[^>]*>", page):
        assert f'nonce="{nonce.group(1)}"' in tag and 'src="/graphiql/static/' in tag
    assert "<script>" not in page and "<style" not in page and " style=" not in page

    again = await client.get("/graphiql")
    assert _directives(again.headers["content-security-policy"])["script-src"] != [
        f"'nonce-{nonce.group(1)}'"
    ]


async def test_assets_are_served_from_our_origin_exactly_as_installed(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/graphiql")).text
    linked = re.findall(r'(?:src|href)="(/graphiql/static/[^"]+)" integrity="([^"]+)"', page)
    assert {url.split("/")[-1].split("?")[0] for url, _ in linked} == set(ASSETS)
    for url, integrity in linked:
        response = await client.get(url, headers={"accept-encoding": "gzip"})
        assert response.status_code == 200, url
        assert response.headers["content-encoding"] == "gzip"
        name = url.split("/")[-1].split("?")[0]
        path, media_type = ASSETS[name]
        assert response.content == (ASSET_DIR / path).read_bytes()  # httpx un-gzips it
        assert response.headers["content-type"] == media_type
        assert response.headers["cross-origin-resource-policy"] == "same-origin"
        digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
        assert integrity == f"sha384-{digest}"


async def test_only_the_listed_files_are_served(client: httpx.AsyncClient) -> None:
    for path in (
        "/graphiql/static/package.json",
        "/graphiql/static/..%2Fpackage-lock.json",
        "/graphiql/static/node_modules%2Fgraphiql%2Fpackage.json",
        "/graphiql/static/../../server.py",
    ):
        assert (await client.get(path)).status_code == 404, path


async def test_a_browser_opening_graphql_lands_on_graphiql(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 307 and response.headers["location"] == "/graphiql"
    # Anything else is the API's, unchanged.
    api = await client.post("/graphql", json={"query": "{ __typename }"})
    assert api.status_code == 200 and api.json()["data"] == {"__typename": "Query"}
    assert "default-src 'none'" in api.headers["content-security-policy"]


async def test_production_serves_no_graphiql_unless_turned_on(
    settings: Settings, tmp_path: Path
) -> None:
    production = load_settings({"APP_ENV": "production", "DATA_DIR": str(tmp_path), **SECRETS})
    assert production.graphiql is False
    off = replace(settings, app_env="production", graphiql_switch=False)
    async with _client(create_app(off)) as client:
        for path in ("/graphiql", "/graphiql/static/graphiql.js"):
            assert (await client.get(path)).status_code == 404, path
        page = await client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 404 and "graphiql" not in page.text.lower()

    turned_on = load_settings(
        {"APP_ENV": "production", "DATA_DIR": str(tmp_path), "GRAPHIQL": "on", **SECRETS}
    )
    assert turned_on.graphiql is True
    async with _client(create_app(replace(off, graphiql_switch=True))) as client:
        assert (await client.get("/graphiql")).status_code == 200


def test_the_graphiql_setting(tmp_path: Path) -> None:
    assert load_settings({"DATA_DIR": str(tmp_path)}).graphiql is True
    assert load_settings({"DATA_DIR": str(tmp_path), "GRAPHIQL": "off"}).graphiql is False
    with pytest.raises(SettingsError, match="GRAPHIQL"):
        load_settings({"DATA_DIR": str(tmp_path), "GRAPHIQL": "staff"})


async def test_missing_assets_answer_503_naming_the_fix(
    settings: Settings, tmp_path: Path
) -> None:
    app = Starlette(routes=graphiql.routes(settings, store=AssetStore(tmp_path)))
    async with _client(app) as client:
        response = await client.get("/graphiql")
        assert response.status_code == 503 and "make assets" in response.text
        assert (await client.get("/graphiql/static/boot.js")).status_code == 503
