"""GraphiQL as a staff member sees it: the real server process, Debian's chromium.

The server is started as `make run` starts it (`server.py serve`, embedded default);
a staff member is created with the `create-staff` command and logs in with a TOTP
code; chromium (headless, fresh profile, no network but loopback) opens /graphql,
types the token into GraphiQL's headers pane, runs a query and must see the answer.
Every request the page makes must go to the loopback server, the page must raise no
CSP violation, and the token must be in no browser storage, during use or after a
reload. On failure a screenshot and the page's HTML are kept in test-artifacts/.

Without chromium the test is SKIPPED (`make test` installs it as root); CI sets
REQUIRE_BROWSER=1, which turns the skip into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.helpers import PASSWORD
from web.endpoints.graphiql import ASSET_DIR, ASSETS

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The flags of the brief: headless, and none of chromium's own traffic (updates,
# sync, field trials) so that every request seen is the page's.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Belt and braces: no name but the loopback address resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
LOG_IN = "mutation($e: String!, $p: String!, $o: String) { logIn(email: $e, password: $p, otp: $o) { token } }"
# Collects the page's CSP violations; playwright injects it outside the page's CSP.
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`);
});
"""
STORAGE_DUMP = """() => JSON.stringify({
  local: Object.entries(localStorage), session: Object.entries(sessionStorage),
  cookies: document.cookie})"""


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(f"GraphiQL browser test SKIPPED: {reason}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`server.py serve` on a free loopback port with its own DATA_DIR (SQLite, files)."""

    def __init__(self, data_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / "server.log"
        self.env = {
            **os.environ,
            "APP_ENV": "development",
            "DATA_DIR": str(data_dir),
            "PORT": str(self.port),
            "BACKUP_PERIOD_SECONDS": "0",
        }
        for name in ("DATABASE_URL", "STORAGE_URL", "JOB_BROKER_URL", "REDIS_URL", "GRAPHIQL"):
            self.env.pop(name, None)
        self.process: subprocess.Popen[bytes] | None = None

    def create_staff(self, email: str) -> str:
        """The documented way (README): password on stdin, the TOTP URI printed once."""
        result = subprocess.run(
            [sys.executable, "server.py", "create-staff", email],
            cwd=REPO,
            env=self.env,
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        match = re.search(r"otpauth://\S+", result.stdout)
        assert match, result.stdout + result.stderr
        return match.group(0)

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "server.py", "serve"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def chromium() -> str:
    _require(Path(CHROMIUM).is_file() or bool(shutil.which(CHROMIUM)), f"no {CHROMIUM}")
    return CHROMIUM


@pytest.fixture
def staff_session(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, str]]:
    """A running server and a logged-in staff member: (server, email, token)."""
    assets = [ASSET_DIR / path for path, _ in ASSETS.values()]
    missing = [str(path) for path in assets if not path.is_file()]
    assert not missing, f"GraphiQL assets missing (run `make assets`): {missing}"
    server = ServerProcess(tmp_path / "data")
    email = f"graphiql-{uuid.uuid4().hex[:8]}@example.com"
    totp = pyotp.parse_uri(server.create_staff(email))
    server.start()
    try:
        response = httpx.post(
            server.url + "/graphql",
            json={"query": LOG_IN, "variables": {"e": email, "p": PASSWORD, "o": totp.now()}},
            timeout=30,
        )
        body = response.json()
        assert not body.get("errors"), body
        yield server, email, body["data"]["logIn"]["token"]
    finally:
        server.stop()


def _set_editor(page: Page, selector: str, text: str) -> None:
    """Replace an editor's text as a person would: click, select all, type. (insert_text
    types the whole text at once, so CodeMirror does not auto-close the brackets.)"""
    page.locator(selector).click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(text)


def _keep_artifacts(page: Page, name: str, server: ServerProcess) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    (ARTIFACTS / f"{name}.html").write_text(page.content())
    (ARTIFACTS / f"{name}-server.log").write_text(server.log())


def test_staff_runs_a_query_in_graphiql_with_no_internet(
    chromium: str, staff_session: tuple[ServerProcess, str, str], tmp_path: Path
) -> None:
    server, email, token = staff_session
    requested: list[str] = []
    with sync_playwright() as playwright:
        # launch_persistent_context: a fresh --user-data-dir of our own for this run.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
            service_workers="block",
        )
        try:
            context.on("request", lambda request: requested.append(request.url))
            # Anything not for the loopback server is refused before it leaves.
            context.route(
                "**/*",
                lambda route: route.continue_()
                if urlsplit(route.request.url).hostname in LOOPBACK
                else route.abort(),
            )
            context.add_init_script(CSP_PROBE)
            page = context.new_page()
            try:
                _run_query_as_staff(page, server, email, token)
            except BaseException:
                _keep_artifacts(page, "graphiql-browser", server)
                raise
        finally:
            context.close()

    outside = [url for url in requested if urlsplit(url).hostname not in LOOPBACK]
    assert not outside, f"the page asked hosts other than the server: {outside}"
    assert any("/graphiql/static/graphiql.js" in url for url in requested), requested


def _run_query_as_staff(page: Page, server: ServerProcess, email: str, token: str) -> None:
    page.goto(server.url + "/graphql")  # the address in the README; it leads to GraphiQL
    assert urlsplit(page.url).path == "/graphiql"
    query_editor = page.locator(".graphiql-query-editor .CodeMirror")
    expect(query_editor).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Loading...")).to_have_count(0)

    _set_editor(page, ".graphiql-query-editor .CodeMirror", "{ me { email role } }")
    page.get_by_role("button", name="Headers").click()
    headers = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
    _set_editor(page, headers, '{"Authorization": "Bearer %s"}' % token)
    page.get_by_role("button", name="Execute query").click()

    response = page.locator(".graphiql-response")
    expect(response).to_contain_text(email, timeout=30_000)
    expect(response).to_contain_text('"role": "STAFF"')
    assert "errors" not in response.inner_text()

    # GraphiQL's dialogs add a <style> element: it must pass the CSP by the nonce.
    page.get_by_role("button", name="Open settings dialog").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Escape")

    assert page.evaluate("window.__cspViolations") == []
    stored = page.evaluate(STORAGE_DUMP)
    assert token not in stored and "authorization" not in stored.lower(), stored

    # After a reload the headers are gone: they lived in the page only.
    page.reload()
    expect(query_editor).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Headers").click()
    assert token not in page.locator(".graphiql-editor-tool").inner_text()
    stored = page.evaluate(STORAGE_DUMP)
    assert token not in stored and "authorization" not in stored.lower(), stored
    assert page.evaluate("window.__cspViolations") == []
