"""Issue 14, observability, through real server processes:

- /metrics answers in Prometheus text format, only with the metrics token (404
  without a configured token, 401 with a wrong one), and counts the requests of
  every process that shares PROMETHEUS_MULTIPROC_DIR (two servers, one scrape).
- X-Request-ID is accepted and returned, made when absent or malformed, and is the
  `requestId` of the GraphQL errors and of the JSON log lines of that request.
- The logs of a full scenario (sign-up, log-in, upload, order, errors) hold no
  e-mail, password, token, phone, name or address.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import PASSWORD, box_stl
from tests.server_process import start_server

TOKEN = "metrics-" + secrets.token_hex(8)
SIGN_UP = "mutation($i: SignUpInput!) { signUp(input: $i) { token } }"
LOG_IN = "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }"
ORDER = "mutation($i: OrderInput!) { requestOrder(input: $i) { id status } }"
MODEL = "query($id: ID!) { model(id: $id) { analysisStatus } }"


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process, port = start_server(env, log)
        self.url = f"http://127.0.0.1:{port}"

    def post(
        self,
        query: str,
        variables: dict | None = None,
        token: str | None = None,
        headers: dict | None = None,
    ) -> httpx.Response:
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.post(
            self.url + "/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=60,
        )

    def metrics(self, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + "/metrics", headers=headers, timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


@pytest.fixture
def shared(tmp_path: Path) -> dict[str, str]:
    """What two server processes of one deployment share: the data, the metrics dir."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    return {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite://{tmp_path / 'data' / 'db.sqlite3'}",
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_FORMAT": "json",
        "RATE_LIMITS": "signup_ip=1000/hour,login_ip=1000/hour,upload_user=1000/hour",
    }


@pytest.fixture
def servers(shared: dict[str, str], tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        started.append(Server(shared, tmp_path / "a.log"))  # migrates the database
        started.append(Server(shared, tmp_path / "b.log"))
        yield started
    finally:
        for server in started:
            server.stop()


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{wanted}}}" if labels else name) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _sign_up(server: Server, email: str, phone: str) -> str:
    variables = {
        "i": {
            "email": email,
            "password": PASSWORD,
            "firstName": "Zebulon",
            "lastName": "Quixotic",
            "companyName": "Quasar Fabrik",
            "phone": phone,
            "address": {
                "line1": "Zypressenweg 77",
                "postalCode": "10115",
                "city": "Berlin",
                "country": "DE",
            },
        }
    }
    answer = server.post(SIGN_UP, variables).json()
    return answer["data"]["signUp"]["token"]


def _log_lines(server: Server) -> list[dict]:
    lines = []
    for line in server.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_metrics_add_up_across_two_processes_and_are_protected(servers: list[Server]) -> None:
    a, b = servers
    assert a.metrics(token=None).status_code == 401
    assert a.metrics(token="wrong").status_code == 401
    before = _sample(a.metrics().text, "pv_graphql_requests_total", operation="query me")
    for _ in range(3):
        assert a.post("{ me { id } }").status_code == 200
    for _ in range(4):
        assert b.post("{ me { id } }").status_code == 200
    assert b.post("{ nope }").json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    for scraper in (a, b):  # whichever process answers, it counts both
        response = scraper.metrics()
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        count = _sample(text, "pv_graphql_requests_total", operation="query me")
        assert count - before == 7
        assert _sample(text, "pv_graphql_errors_total", code="BAD_USER_INPUT") >= 1
        assert "# TYPE pv_graphql_request_seconds histogram" in text
        assert "pv_job_queue_depth" in text and "pv_job_queue_oldest_seconds" in text


def test_without_a_token_metrics_do_not_exist(tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "METRICS_TOKEN": ""}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = Server(env, tmp_path / "server.log")
    try:
        assert server.metrics(token=None).status_code == 404
        assert server.metrics(token="").status_code == 404
    finally:
        server.stop()


def test_request_ids_and_clean_logs_of_a_full_scenario(servers: list[Server]) -> None:
    a, b = servers
    email = f"zq-{secrets.token_hex(5)}@example.com"
    phone = "+49 30 " + str(secrets.randbelow(10**7)).zfill(7)
    token = _sign_up(a, email, phone)
    # X-Request-ID: ours comes back, and is the errors' requestId and the logs'.
    rid = "client-" + secrets.token_hex(6)
    refused = b.post(
        "{ users(first: 5) { edges { node { id } } } }", token=token, headers={"X-Request-ID": rid}
    )
    assert refused.headers["x-request-id"] == rid
    assert refused.json()["errors"][0]["extensions"]["requestId"] == rid
    made = a.post("{ me { id } }", headers={"X-Request-ID": "bad id with spaces;<>"})
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    # The rest of a customer's day: log-in (also a wrong password), upload, order.
    assert a.post(LOG_IN, {"e": email, "p": "wrong " + PASSWORD}).json()["errors"]
    session = b.post(LOG_IN, {"e": email, "p": PASSWORD}).json()["data"]["logIn"]["token"]
    operations = {
        "query": "mutation($f: Upload!) { uploadModel(file: $f) { id } }",
        "variables": {"f": None},
    }
    uploaded = httpx.post(
        a.url + "/graphql",
        files={
            "operations": (None, json.dumps(operations), "application/json"),
            "map": (None, json.dumps({"0": ["variables.f"]}), "application/json"),
            "0": ("secret-plans.stl", box_stl(), "application/octet-stream"),
        },
        headers={"Authorization": f"Bearer {session}", "Apollo-Require-Preflight": "1"},
        timeout=60,
    ).json()
    model_id = uploaded["data"]["uploadModel"]["id"]
    for _ in range(300):  # the analysis runs in server a
        status = a.post(MODEL, {"id": model_id}, token=session).json()["data"]["model"]
        if status["analysisStatus"] in ("DONE", "FAILED"):
            break
        time.sleep(0.2)
    order = {
        "modelId": model_id,
        "quantity": 2,
        "material": "PETG",
        "shippingAddress": {
            "line1": "Zypressenweg 77",
            "postalCode": "10115",
            "city": "Berlin",
            "country": "DE",
        },
        "billingAddress": {
            "line1": "Zypressenweg 77",
            "postalCode": "10115",
            "city": "Berlin",
            "country": "DE",
        },
        "billingInfo": "VAT DE999999999",
    }
    ordered = b.post(ORDER, {"i": order}, token=session).json()
    assert ordered["data"]["requestOrder"]["id"], ordered
    for server in servers:
        server.stop()

    lines = [line for server in servers for line in _log_lines(server)]
    assert any(line.get("request_id") == rid and line.get("route") == "/graphql" for line in lines)
    assert all("request_id" in line and "level" in line for line in lines)
    text = "\n".join(server.log.read_text(errors="replace") for server in servers)
    for secret in (
        email,
        email.split("@")[0],
        PASSWORD,
        token,
        session,
        phone,
        "Zypressenweg",
        "Zebulon",
        "Quixotic",
        "VAT DE999999999",
        "secret-plans",
    ):
        assert secret not in text, f"{secret!r} was logged"
