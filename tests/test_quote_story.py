"""Issue 9's "Done when", over the API of a real server process (`server.py serve`,
SQLite and the encrypted local store, the analysis in its isolated child).

A customer lists the materials, uploads a 300 mm bar, gets quotes in two materials
with breakdowns: standard resin refuses it (it fits a 145x145x185 mm build volume in
no orientation), PLA takes it tilted along a diagonal. The customer orders from the
PLA quote (the resin one is refused, NOT_PRINTABLE, nothing created); staff route the
order to a print service once it offers PLA; the provider prints without seeing prices.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.helpers import ADDRESS, PASSWORD, box_stl, email
from tests.server_process import REPO, start_server

QUOTE_FIELDS = """id quantity unitPrice total currency printable leadTimeDays expiresAt
  breakdown { label amount } issues { code severity message } material { code process }"""
CREATE_QUOTE = (
    "mutation($m: ID!, $c: String!, $q: Int!) { createQuote(modelId: $m, materialCode: $c, "
    "quantity: $q) { %s } }" % QUOTE_FIELDS
)
REQUEST = """mutation($i: OrderInput!) { requestOrder(input: $i) {
  id status material quantity price currency quote { id total } } }"""
ASSIGN = "mutation($o: ID!, $c: ID!) { assignOrder(orderId: $o, providerCompanyId: $c) { status } }"


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.env = {**os.environ, "DATA_DIR": str(data_dir)}
        self.env.pop("DATABASE_URL", None)
        self.env.pop("STORAGE_URL", None)
        log = Path(tempfile.mkdtemp(prefix="pv-quote-")) / "server.log"
        self.process, port = start_server(self.env, log)
        self.url = f"http://127.0.0.1:{port}/graphql"

    def gql(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(
            self.url,
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=60,
        )
        return response.json()

    def ok(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        body = self.gql(query, variables, token)
        assert not body.get("errors"), body
        return body["data"]

    def upload(self, content: bytes, name: str, token: str) -> str:
        operations = {
            "query": "mutation($f: Upload!) { uploadModel(file: $f) { id } }",
            "variables": {"f": None},
        }
        response = httpx.post(
            self.url,
            files={
                "operations": (None, json.dumps(operations), "application/json"),
                "map": (None, json.dumps({"0": ["variables.f"]}), "application/json"),
                "0": (name, content, "application/octet-stream"),
            },
            headers={"Authorization": f"Bearer {token}", "Apollo-Require-Preflight": "1"},
            timeout=60,
        )
        body = response.json()
        assert not body.get("errors"), body
        return body["data"]["uploadModel"]["id"]

    def staff_token(self) -> str:
        address = email("ops")
        created = subprocess.run(
            [sys.executable, "server.py", "create-staff", address],
            cwd=REPO,
            env=self.env,
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        uri = re.search(r"otpauth://\S+", created.stdout)
        assert uri, created.stdout + created.stderr
        code = pyotp.TOTP(pyotp.parse_uri(uri.group(0)).secret).now()
        log_in = "mutation($e: String!, $p: String!, $o: String) { logIn(email: $e, password: $p, otp: $o) { token } }"
        return self.ok(log_in, {"e": address, "p": PASSWORD, "o": code})["logIn"]["token"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path):
    running = Server(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _wait_done(server: Server, model_id: str, token: str) -> dict:
    deadline = time.monotonic() + 60
    query = "query($m: ID!) { model(id: $m) { analysisStatus analysisError } }"
    while time.monotonic() < deadline:
        model = server.ok(query, {"m": model_id}, token)["model"]
        if model["analysisStatus"] in ("DONE", "FAILED"):
            return model
        time.sleep(0.1)
    raise AssertionError("analysis did not finish")


def _sum(lines: list[dict]) -> Decimal:
    return sum((Decimal(str(line["amount"])) for line in lines), Decimal(0))


def test_customer_quotes_orders_and_staff_route_it(server: Server) -> None:
    signed_up = server.ok(
        "mutation($i: SignUpInput!) { signUp(input: $i) { token } }",
        {
            "i": {
                "email": email("story"),
                "password": PASSWORD,
                "firstName": "Ada",
                "lastName": "L",
                "companyName": "Engines Ltd",
                "address": ADDRESS,
            }
        },
    )
    customer = signed_up["signUp"]["token"]

    # The catalogue, as any signed-in user sees it.
    materials = server.ok(
        "{ materials { code process minWallMm buildVolume { x y z } "
        "pricePerCm3 currency active } }",
        token=customer,
    )["materials"]
    codes = {m["code"] for m in materials}
    assert {"PLA", "PETG", "RESIN_STANDARD", "PA12_SLS", "PA12_MJF"} <= codes
    assert "PA12" not in codes and all(m["active"] for m in materials)

    # A 300 mm bar: too long for the resin printer in any orientation, fits PLA's tilted.
    model_id = server.upload(box_stl(300.0, 12.0, 12.0, header=b"bar"), "bar.stl", customer)
    assert _wait_done(server, model_id, customer)["analysisStatus"] == "DONE"

    resin = server.ok(CREATE_QUOTE, {"m": model_id, "c": "RESIN_STANDARD", "q": 2}, customer)[
        "createQuote"
    ]
    assert resin["printable"] is False
    assert resin["issues"][0]["code"] == "EXCEEDS_BUILD_VOLUME"
    assert (
        resin["issues"][0]["severity"] == "error" and "145x145x185" in resin["issues"][0]["message"]
    )
    pla = server.ok(CREATE_QUOTE, {"m": model_id, "c": "PLA", "q": 2}, customer)["createQuote"]
    assert pla["printable"] is True and pla["material"] == {"code": "PLA", "process": "FDM"}
    assert "ROTATED_TO_FIT" in {issue["code"] for issue in pla["issues"]}
    for quote in (resin, pla):  # the published breakdown sums to the total
        assert quote["breakdown"] and _sum(quote["breakdown"]) == Decimal(str(quote["total"]))
        assert quote["quantity"] == 2 and quote["currency"] == "EUR" and quote["leadTimeDays"] > 0
    assert pla["total"] >= 10.0  # PLA's minimum price

    order_input = {
        "modelId": model_id,
        "quantity": 2,
        "shippingAddress": ADDRESS,
        "billingAddress": ADDRESS,
    }
    # The refused quote cannot be ordered, nor the material without a quote: nothing made.
    for extra in (
        {"material": "RESIN_STANDARD", "quoteId": resin["id"]},
        {"material": "RESIN_STANDARD"},
    ):
        body = server.gql(REQUEST, {"i": {**order_input, **extra}}, customer)
        assert body["errors"][0]["extensions"]["code"] == "NOT_PRINTABLE", body
        assert "145x145x185" in body["errors"][0]["message"]
    assert (
        server.ok("{ orders { edges { node { id } } } }", token=customer)["orders"]["edges"] == []
    )
    # The quote's terms are binding: another quantity is refused.
    body = server.gql(
        REQUEST,
        {"i": {**order_input, "material": "PLA", "quantity": 3, "quoteId": pla["id"]}},
        customer,
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    order = server.ok(
        REQUEST, {"i": {**order_input, "material": "PLA", "quoteId": pla["id"]}}, customer
    )["requestOrder"]
    assert order["status"] == "REQUESTED" and order["material"] == "PLA"
    assert order["price"] == pla["total"] and order["currency"] == "EUR"
    assert order["quote"] == {"id": pla["id"], "total": pla["total"]}

    # Staff route it to a print service, once it offers PLA.
    staff = server.staff_token()
    company = server.ok(
        'mutation { createCompany(name: "Druck AG", kind: PRINT_SERVICE) { id } }', token=staff
    )["createCompany"]["id"]
    assert (
        server.gql(ASSIGN, {"o": order["id"], "c": company}, staff)["errors"][0]["extensions"][
            "code"
        ]
        == "BAD_USER_INPUT"
    )
    offered = server.ok(
        'mutation($c: ID!) { setProviderMaterials(companyId: $c, materialCodes: ["PLA", '
        '"PETG"]) { materials { code } } }',
        {"c": company},
        staff,
    )["setProviderMaterials"]["materials"]
    assert [m["code"] for m in offered] == ["PETG", "PLA"]
    assert server.ok(ASSIGN, {"o": order["id"], "c": company}, staff)["assignOrder"] == {
        "status": "ASSIGNED"
    }

    # The provider prints it: material and quantity yes, the price no.
    invitation = server.ok(
        "mutation($c: ID!, $e: String!) { inviteUser(email: $e, role: PROVIDER, companyId: $c) "
        "{ token } }",
        {"c": company, "e": email("printer")},
        staff,
    )["inviteUser"]["token"]
    provider = server.ok(
        "mutation($t: String!, $p: String!) { acceptInvitation(token: $t, password: $p, "
        'firstName: "P", lastName: "R") { token } }',
        {"t": invitation, "p": PASSWORD},
    )["acceptInvitation"]["token"]
    body = server.gql(
        "query($o: ID!) { order(id: $o) { material quantity price quote { id } } }",
        {"o": order["id"]},
        provider,
    )
    assert body["data"]["order"] == {"material": "PLA", "quantity": 2, "price": None, "quote": None}
    assert {e["extensions"]["code"] for e in body["errors"]} == {"FORBIDDEN"}
