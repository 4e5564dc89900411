"""Issue 10, finding 2: nobody can lock an owner out by failing their log-in.

Failures count per (account, address) and, more slowly, per account (100/hour, OWASP
ASVS 2.2.1); an address the account logged in from before is not held back by the
account budget. Behind TRUSTED_PROXIES the address is X-Forwarded-For's, tested against
the real server process.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import httpx

from runtime.rate_limits import DEFAULT_LIMITS
from tests.conftest import serving
from tests.helpers import ADDRESS, PASSWORD, email
from tests.server_process import start_server

LOG_IN = "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }"
SIGN_UP = "mutation($i: SignUpInput!) { signUp(input: $i) { token } }"
ATTACKER, OWNER = "203.0.113.66", "198.51.100.20"


def _code(body: dict) -> str | None:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


def test_the_documented_numbers() -> None:
    assert DEFAULT_LIMITS["login_account_ip"] == "10/15 minutes"
    assert DEFAULT_LIMITS["login_account"] == "100/hour"  # ASVS: <= 100 failures/hour/account


def test_an_attacker_behind_the_proxy_cannot_lock_out_the_owner(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "HOST": "127.0.0.1",
        "TRUSTED_PROXIES": "127.0.0.1/32",
    }
    server, port = start_server(env, tmp_path / "server.log")
    url = f"http://127.0.0.1:{port}/graphql"

    def post(query: str, variables: dict, client_ip: str) -> dict:
        return httpx.post(
            url,
            json={"query": query, "variables": variables},
            headers={"X-Forwarded-For": client_ip},
            timeout=30,
        ).json()

    try:
        account = email("owner")
        signup = {"email": account, "password": PASSWORD, "firstName": "O", "lastName": "W",
                  "companyName": "C", "address": ADDRESS}
        assert not post(SIGN_UP, {"i": signup}, "192.0.2.1").get("errors")
        wrong = {"e": account, "p": "a wrong password 123"}
        codes = [_code(post(LOG_IN, wrong, ATTACKER)) for _ in range(12)]
        assert codes == ["UNAUTHENTICATED"] * 10 + ["RATE_LIMITED"] * 2
        # The attacker's address is held back, even with the right password...
        assert _code(post(LOG_IN, {"e": account, "p": PASSWORD}, ATTACKER)) == "RATE_LIMITED"
        # ...the owner, from another address, gets in.
        body = post(LOG_IN, {"e": account, "p": PASSWORD}, OWNER)
        assert body["data"]["logIn"]["token"], body
    finally:
        server.terminate()
        server.wait(timeout=30)


async def test_the_account_budget_bounds_many_addresses_but_spares_known_ones(
    database, settings, tmp_path
) -> None:
    limited = replace(
        settings,
        rate_limits="login_account_ip=2/15 minutes,login_account=5/hour",
        trusted_proxies=("203.0.113.7/32",),  # the test client's address: XFF is honoured
        storage_url=f"file://{tmp_path}",
    )
    async with serving(limited) as api:
        owner = await api.customer()
        account = owner.user.email

        async def log_in(password: str, ip: str) -> str | None:
            return _code(await api.gql(
                LOG_IN, {"e": account, "p": password}, headers={"X-Forwarded-For": ip}
            ))

        assert await log_in(PASSWORD, OWNER) is None  # the owner's usual address
        outcomes = [await log_in("a wrong password 1", f"203.0.113.{n // 2 + 100}")
                    for n in range(8)]
        # Five failures (from three addresses) exhaust the account's hourly budget.
        assert outcomes == ["UNAUTHENTICATED"] * 5 + ["RATE_LIMITED"] * 3
        assert await log_in(PASSWORD, "192.0.2.200") == "RATE_LIMITED"  # a new address waits
        assert await log_in(PASSWORD, OWNER) is None  # a known one does not
