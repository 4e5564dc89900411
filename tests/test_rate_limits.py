"""Rate limits: per account and per IP, with Retry-After, sliding (never a
permanent lock-out), and shared between server processes through Redis."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis

from storage.models import Company, CompanyKind, Model3D, Order, OrderStatus, Role
from tests.conftest import serving
from tests.helpers import (
    ADDRESS,
    PASSWORD,
    REDIS_URL,
    analysed_model,
    box_stl,
    email,
    offer_every_material,
)
from tests.server_process import start_server

LOG_IN = "mutation($e: String!, $p: String!) { logIn(email: $e, password: $p) { token } }"
SIGN_UP = "mutation($i: SignUpInput!) { signUp(input: $i) { token } }"


def _codes(body: dict) -> set[str]:
    return {e["extensions"]["code"] for e in body.get("errors") or []}


class _Clock:
    """time.time() for the in-memory limiter, with a hand to move it forward: the
    window can then be long (no Argon2 log-in under load outlasts it) and passing
    it takes no sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name: str):
        return getattr(time, name)


async def test_log_in_is_slowed_per_account_then_recovers(
    database, settings, tmp_path, monkeypatch
) -> None:
    import limits.aio.storage.memory

    import runtime.rate_limits

    clock = _Clock()
    monkeypatch.setattr(limits.aio.storage.memory, "time", clock)
    monkeypatch.setattr(runtime.rate_limits, "time", clock)
    limited = replace(
        settings, rate_limits="login_account=3/minute", storage_url=f"file://{tmp_path}"
    )
    async with serving(limited) as api:
        caller = await api.customer()
        wrong = {"e": caller.user.email, "p": "not the password 123"}
        for _ in range(3):
            assert _codes(await api.gql(LOG_IN, wrong)) == {"UNAUTHENTICATED"}
        response = await api.client.post("/graphql", json={"query": LOG_IN, "variables": wrong})
        body = response.json()
        assert _codes(body) == {"RATE_LIMITED"}
        assert int(response.headers["retry-after"]) >= 1
        assert body["errors"][0]["extensions"]["retryAfter"] >= 1
        # Even the right password waits: the attacker cannot tell.
        assert _codes(await api.gql(LOG_IN, {**wrong, "p": PASSWORD})) == {"RATE_LIMITED"}
        clock.offset += 61  # the window slides past the failed attempts
        assert (await api.ok(LOG_IN, {**wrong, "p": PASSWORD}))["logIn"]["token"]


async def test_sign_up_is_limited_per_ip(database, settings, tmp_path) -> None:
    limited = replace(settings, rate_limits="signup_ip=2/hour", storage_url=f"file://{tmp_path}")
    async with serving(limited) as api:

        def data() -> dict:
            return {
                "email": email("s"),
                "password": PASSWORD,
                "firstName": "A",
                "lastName": "B",
                "companyName": "C",
                "address": ADDRESS,
            }

        for _ in range(2):
            await api.ok(SIGN_UP, {"i": data()})
        assert _codes(await api.gql(SIGN_UP, {"i": data()})) == {"RATE_LIMITED"}


async def test_uploads_are_limited_before_any_byte_is_stored(database, settings, tmp_path) -> None:
    limited = replace(
        settings, rate_limits="upload_user=1/hour", storage_url=f"file://{tmp_path}/o"
    )
    async with serving(limited) as api:
        caller = await api.customer()
        assert (await api.upload(box_stl(), token=caller.token)).status_code == 200
        response = await api.upload(box_stl(), token=caller.token)
        assert response.status_code == 429 and "retry-after" in response.headers
        assert _codes(response.json()) == {"RATE_LIMITED"}
        assert await Model3D.all().count() == 1


REQUEST_ORDER = "mutation($i: OrderInput!) { requestOrder(input: $i) { id } }"
ASSIGN = "mutation($o: ID!, $c: ID!) { assignOrder(orderId: $o, providerCompanyId: $c) { id } }"
STEP = "mutation($o: ID!, $s: OrderStatus!) { updateOrderStatus(orderId: $o, status: $s) { id } }"


def _limited(body: dict) -> bool:
    errors = body.get("errors") or []
    return [e["extensions"]["code"] for e in errors] == ["RATE_LIMITED"] and all(
        e["extensions"]["retryAfter"] >= 1 for e in errors
    )


async def test_order_requests_and_steps_are_limited_per_user(database, settings, tmp_path) -> None:
    limited = replace(
        settings,
        rate_limits="order_request_user=2/hour,order_step_user=2/hour",
        storage_url=f"file://{tmp_path}/o",
    )
    async with serving(limited) as api:
        customer = await api.customer()
        company = await Company.get(id=customer.user.company_id)
        colleague = await api.member(company, Role.CUSTOMER)
        model = await analysed_model(api.services.keyring, company.id, customer.user.id)
        printer = await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
        await offer_every_material(printer.id)
        provider, staff = await api.provider(printer, admin=True), await api.staff()
        order = {
            "modelId": str(model.id),
            "quantity": 1,
            "material": "PLA",
            "shippingAddress": ADDRESS,
            "billingAddress": ADDRESS,
        }

        ids = [
            (await api.ok(REQUEST_ORDER, {"i": order}, customer.token))["requestOrder"]["id"]
            for _ in range(2)
        ]
        assert _limited(await api.gql(REQUEST_ORDER, {"i": order}, customer.token))
        assert await Order.all().count() == 2  # the refused request wrote nothing
        # The budget is the caller's own: a colleague still orders.
        await api.ok(REQUEST_ORDER, {"i": order}, colleague.token)

        for order_id in ids:  # staff's two steps
            await api.ok(ASSIGN, {"o": order_id, "c": str(printer.id)}, staff.token)
        assert _limited(await api.gql(ASSIGN, {"o": ids[0], "c": str(printer.id)}, staff.token))
        for order_id in ids:  # the provider's own two
            await api.ok(STEP, {"o": order_id, "s": "ACCEPTED"}, provider.token)
        assert _limited(await api.gql(STEP, {"o": ids[0], "s": "IN_PRODUCTION"}, provider.token))
        assert (await Order.get(id=ids[0])).status == OrderStatus.ACCEPTED


def test_unknown_rate_limit_names_are_refused() -> None:
    from runtime.rate_limits import parse_overrides

    with pytest.raises(ValueError, match="unknown"):
        parse_overrides("login=1/minute")


# --- two server processes share their counters through Redis --------------------------------


def _redis_or_skip() -> str:
    url = REDIS_URL
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis required (REQUIRE_REDIS=1) but unreachable: {error}")
        pytest.skip(f"Redis SKIPPED: unreachable at {url}: {error}")
    return url


def test_two_processes_share_the_limits(tmp_path: Path) -> None:
    redis_url = _redis_or_skip()
    prefix = f"pvtest-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "REDIS_URL": redis_url,
        "RATE_LIMIT_PREFIX": prefix,
        # The sign-up made 127.0.0.1 a known address of the account: the per-address
        # limit is the one that applies (tests/test_login_throttle.py).
        "RATE_LIMITS": "login_account_ip=4/minute",
        "HOST": "127.0.0.1",
    }
    first, port = start_server(env, tmp_path / "server-1.log")
    servers, ports = [first], [port]
    try:
        second, port = start_server(env, tmp_path / "server-2.log")  # the first has migrated
        servers.append(second)
        ports.append(port)
        account = email("shared")
        signup = {
            "email": account,
            "password": PASSWORD,
            "firstName": "A",
            "lastName": "B",
            "companyName": "C",
            "address": ADDRESS,
        }
        httpx.post(
            f"http://127.0.0.1:{ports[0]}/graphql",
            json={"query": SIGN_UP, "variables": {"i": signup}},
            timeout=30,
        ).raise_for_status()
        outcomes = []
        for attempt in range(6):
            port = ports[attempt % 2]
            body = httpx.post(
                f"http://127.0.0.1:{port}/graphql",
                json={"query": LOG_IN, "variables": {"e": account, "p": "wrong password 1234"}},
                timeout=30,
            ).json()
            outcomes.append(next(iter(_codes(body))))
        assert outcomes == ["UNAUTHENTICATED"] * 4 + ["RATE_LIMITED"] * 2
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
