"""Subscriptions over graphql-transport-ws against real server processes.

The servers (`server.py serve`) share the test's database and SECRET_KEY, so callers made
with the test's factories are valid there. Clients are real websocket clients
(`websockets`). With REDIS_URL two servers share events: a change made through one
reaches a subscriber connected to the other.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from domain.enums import CompanyKind
from storage.crypto import KeyRing
from storage.models import Company, Model3D, OrderEvent
from tests.helpers import (
    ADDRESS,
    REDIS_URL,
    Api,
    Caller,
    analysed_model,
    box_stl,
    offer_every_material,
    redis_database,
)
from tests.server_process import start_server

PROTOCOL = "graphql-transport-ws"
ORDER_EVENTS = "subscription($o: ID) { orderEvents(orderId: $o) { status at note } }"
GUIDE = Path(__file__).resolve().parents[1] / "docs" / "provider-integration.md"


@dataclass
class Server:
    process: subprocess.Popen
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"


def _env(settings: Any, database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    keys = ",".join(
        f"{kid}:{base64.b64encode(key).decode()}" for kid, key in settings.master_keys.items()
    )
    return {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": database_url,
        "SECRET_KEY": base64.b64encode(settings.secret_key).decode(),
        "MASTER_KEYS": keys,
        "HOST": "127.0.0.1",
        "BACKUP_PERIOD_SECONDS": "0",
        **extra,
    }


@contextlib.contextmanager
def _servers(env: dict[str, str], tmp_path: Path, count: int) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for number in range(count):
            process, port = start_server(env, tmp_path / f"server-{number}.log")
            started.append(Server(process, port))
        yield started
    finally:
        for server in started:
            server.process.terminate()
        for server in started:
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=30)


def _redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis required (REQUIRE_REDIS=1) but unreachable: {error}")
        pytest.skip(f"Redis SKIPPED: unreachable at {REDIS_URL}: {error}")


@contextlib.asynccontextmanager
async def subscribed(
    server: Server, token: str, query: str, variables: dict[str, Any]
) -> AsyncIterator[ClientConnection]:
    """A connection, acknowledged, with one subscription (id "1") started."""
    async with connect(server.ws, subprotocols=[PROTOCOL], open_timeout=10) as socket:
        await socket.send(json.dumps(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        ))
        ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        await socket.send(json.dumps(
            {"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}
        ))
        await asyncio.sleep(0.3)  # the server subscribes to the bus before the test acts
        yield socket


async def _next(socket: ClientConnection, wait: float = 10.0) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), wait))
        if message["type"] in ("ping", "pong"):
            continue
        return message


async def _nothing(socket: ClientConnection, wait: float = 1.0) -> None:
    """No message (other than pings) arrives within `wait` seconds."""
    with contextlib.suppress(TimeoutError):
        message = await _next(socket, wait)
        raise AssertionError(f"unexpected message {message}")


def _client(server: Server, settings: Any) -> Api:
    return Api(httpx.AsyncClient(base_url=server.http, timeout=30), settings)


async def _cast(api: Api) -> tuple[Caller, Caller, Caller, Caller, Company, Company, Model3D]:
    customer = await api.customer()
    stranger = await api.customer()
    p1 = await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
    p2 = await Company.create(name="Print GmbH", kind=CompanyKind.PRINT_SERVICE)
    provider = await api.provider(p1)
    staff = await api.staff()
    # A DONE, printable model, and print services offering its material (issue 9).
    model = await analysed_model(
        KeyRing(api.settings.master_keys, api.settings.active_key_id),
        customer.user.company_id, customer.user.id,
    )
    for company in await Company.filter(kind=CompanyKind.PRINT_SERVICE):
        await offer_every_material(company.id)
    return customer, stranger, provider, staff, p1, p2, model


async def _request_order(api: Api, customer: Caller, model: Model3D) -> str:
    data = await api.ok(
        "mutation($i: OrderInput!) { requestOrder(input: $i) { id } }",
        {"i": {"modelId": str(model.id), "quantity": 1, "material": "PETG",
               "shippingAddress": ADDRESS, "billingAddress": ADDRESS}},
        customer.token,
    )
    return data["requestOrder"]["id"]


ASSIGN = "mutation($o: ID!, $p: ID!) { assignOrder(orderId: $o, providerCompanyId: $p) { id } }"
STEP = "mutation($o: ID!, $s: OrderStatus!) { updateOrderStatus(orderId: $o, status: $s) { id } }"


async def test_orders_move_live_for_whoever_may_see_them(
    database: str, database_url: str, settings: Any, tmp_path: Path
) -> None:
    with _servers(_env(settings, database_url, tmp_path), tmp_path, 1) as (server,):
        api = _client(server, settings)
        customer, stranger, provider, staff, p1, p2, model = await _cast(api)
        order_id = await _request_order(api, customer, model)
        async with (
            subscribed(server, customer.token, ORDER_EVENTS, {"o": order_id}) as mine,
            subscribed(server, stranger.token, ORDER_EVENTS, {"o": order_id}) as foreign,
            subscribed(server, stranger.token, ORDER_EVENTS, {"o": None}) as foreign_all,
            subscribed(server, provider.token, ORDER_EVENTS, {"o": None}) as providers,
            subscribed(server, customer.token, ORDER_EVENTS, {"o": "not-an-id"}) as malformed,
        ):
            await api.ok(ASSIGN, {"o": order_id, "p": str(p1.id)}, staff.token)
            got = await _next(mine)
            assert got["type"] == "next" and got["id"] == "1"
            assert got["payload"]["data"]["orderEvents"]["status"] == "ASSIGNED"
            assert (await _next(providers))["payload"]["data"]["orderEvents"]["status"] == (
                "ASSIGNED"
            )
            # The provider declines: from that moment on it hears nothing of the order.
            await api.ok(STEP, {"o": order_id, "s": "DECLINED"}, provider.token)
            assert (await _next(mine))["payload"]["data"]["orderEvents"]["status"] == "DECLINED"
            await api.ok(ASSIGN, {"o": order_id, "p": str(p2.id)}, staff.token)
            assert (await _next(mine))["payload"]["data"]["orderEvents"]["status"] == "ASSIGNED"
            await _nothing(providers)
            # Another company's customer never receives anything, and is not told why.
            await _nothing(foreign, 0.2)
            await _nothing(foreign_all, 0.2)
            await _nothing(malformed, 0.2)
        await api.client.aclose()


async def test_connection_init_needs_a_valid_token(
    database: str, database_url: str, settings: Any, tmp_path: Path
) -> None:
    with _servers(_env(settings, database_url, tmp_path), tmp_path, 1) as (server,):
        async with connect(server.ws, subprotocols=[PROTOCOL]) as socket:
            # The client offers permessage-deflate; the server declines it (memory, CRIME).
            assert socket.response is not None
            assert "Sec-WebSocket-Extensions" not in socket.response.headers
        for payload in ({}, {"Authorization": "Bearer pv_nonsense"}, {"Authorization": 7}):
            async with connect(server.ws, subprotocols=[PROTOCOL]) as socket:
                await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(socket.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        # Subscribing before connection_init is refused by the protocol (4401).
        async with connect(server.ws, subprotocols=[PROTOCOL]) as socket:
            await socket.send(json.dumps({"id": "1", "type": "subscribe",
                                          "payload": {"query": ORDER_EVENTS}}))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_revoked_session_stops_receiving(
    database: str, database_url: str, settings: Any, tmp_path: Path
) -> None:
    with _servers(_env(settings, database_url, tmp_path), tmp_path, 1) as (server,):
        api = _client(server, settings)
        customer, _, _, staff, p1, _, model = await _cast(api)
        order_id = await _request_order(api, customer, model)
        async with subscribed(server, customer.token, ORDER_EVENTS, {"o": order_id}) as mine:
            await api.ok("mutation { logOut }", token=customer.token)
            await api.ok(ASSIGN, {"o": order_id, "p": str(p1.id)}, staff.token)
            ended = await _next(mine)
            assert ended == {"id": "1", "type": "complete"}
        await api.client.aclose()


async def test_two_servers_share_events_through_redis(
    database: str, database_url: str, settings: Any, tmp_path: Path
) -> None:
    _redis_or_skip()
    env = _env(settings, database_url, tmp_path, REDIS_URL=REDIS_URL)
    with _servers(env, tmp_path, 2) as (first, second):
        api = _client(second, settings)
        customer, _, _, staff, p1, _, model = await _cast(api)
        order_id = await _request_order(api, customer, model)
        query = "subscription($m: ID!) { modelAnalysis(modelId: $m) { id analysisStatus } }"
        async with (
            subscribed(first, customer.token, ORDER_EVENTS, {"o": order_id}) as orders_socket,
            subscribed(first, customer.token, query, {"m": str(model.id)}) as model_socket,
        ):
            await api.ok(ASSIGN, {"o": order_id, "p": str(p1.id)}, staff.token)  # on server 2
            got = await _next(orders_socket)
            assert got["payload"]["data"]["orderEvents"]["status"] == "ASSIGNED"
            # An analysis finishing in some process: its event reaches server 1.
            bus = aioredis.Redis.from_url(REDIS_URL)
            await bus.publish(f"printvault:events:model:{model.id}",
                              json.dumps({"kind": "model", "modelId": str(model.id)}))
            await bus.aclose()
            got = await _next(model_socket)
            assert got["payload"]["data"]["modelAnalysis"] == {
                "id": str(model.id), "analysisStatus": "DONE"
            }
        await api.client.aclose()


async def test_a_client_that_never_reads_cannot_grow_server_memory(
    database: str, database_url: str, settings: Any, tmp_path: Path
) -> None:
    """Thousands of events for a subscriber whose socket is never read: the server's
    memory stays bounded (its per-subscription queue drops the oldest) and it keeps
    answering others."""
    _redis_or_skip()
    env = _env(settings, database_url, tmp_path, REDIS_URL=REDIS_URL)
    with _servers(env, tmp_path, 1) as (server,):
        api = _client(server, settings)
        customer, *_, model = await _cast(api)
        order_id = await _request_order(api, customer, model)
        # A step with the longest note allowed: each message to the client is ~2 kB.
        event_id = (await OrderEvent.create(order_id=order_id, status="REQUESTED",
                                            note="x" * 2000)).id
        process = psutil.Process(server.process.pid)
        async with subscribed(server, customer.token, ORDER_EVENTS, {"o": order_id}) as stalled:
            stalled.transport.pause_reading()  # the client never reads its socket
            bus = aioredis.Redis.from_url(REDIS_URL)
            # Padded too, so that events queued inside the server would show as well.
            message = json.dumps(
                {"kind": "order", "orderId": order_id, "eventId": event_id, "pad": "x" * 2000}
            )
            await bus.publish(f"printvault:events:order:{order_id}", message)
            await asyncio.sleep(1.0)
            before = process.memory_info().rss
            for _ in range(20):
                async with bus.pipeline(transaction=False) as pipe:
                    for _ in range(500):
                        pipe.publish(f"printvault:events:order:{order_id}", message)
                    await pipe.execute()
            await asyncio.sleep(3.0)
            after = process.memory_info().rss
            started = time.monotonic()
            health = await api.client.get("/healthz")
            assert health.status_code == 200
            assert time.monotonic() - started < 5
            await bus.aclose()
        growth = after - before
        # 10,000 answers of ~2 kB each would be 20 MB if queued; bounded it stays far below.
        print(f"server RSS growth with a stalled subscriber: {growth / 1e6:.1f} MB")
        assert growth < 8 * 1024 * 1024, f"server grew by {growth} bytes"
        await api.client.aclose()


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "server.py", "worker"], cwd=GUIDE.parents[1],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )


async def test_a_browser_sees_its_models_analysis_finish(
    database: str, database_url: str, settings: Any, tmp_path: Path
) -> None:
    """A real upload to the server, analysed by a worker process started only once the
    subscriptions are in place: the worker's event reaches the server through Redis."""
    _redis_or_skip()
    # The job stream lives in a Redis database of its own, emptied before and after.
    broker = redis_database(10)
    redis.Redis.from_url(broker).flushdb()
    # The most rays allowed: a wall check of 0.1 s or more, so its verdict always comes
    # after DONE is recorded (milliseconds): two events.
    env = _env(settings, database_url, tmp_path, REDIS_URL=REDIS_URL, JOB_BROKER_URL=broker,
               WALL_THICKNESS_SAMPLES="20000")
    with _servers(env, tmp_path, 1) as (server,):
        api = _client(server, settings)
        customer, stranger, provider, *_ = await _cast(api)
        query = """subscription($m: ID!) { modelAnalysis(modelId: $m) { id analysisStatus
          metadata { printability { pendingChecks issues { code } } } } }"""
        uploaded = await api.upload(box_stl(10, 10, 0.4), token=customer.token)
        model_id = uploaded.json()["data"]["uploadModel"]["id"]
        worker = None
        try:
            async with (
                subscribed(server, customer.token, query, {"m": model_id}) as mine,
                subscribed(server, stranger.token, query, {"m": model_id}) as foreign,
                subscribed(server, provider.token, query, {"m": model_id}) as providers,
            ):
                worker = _start_worker(env, tmp_path / "worker.log")
                got = await _next(mine, 120)
                done = got["payload"]["data"]["modelAnalysis"]
                assert (done["id"], done["analysisStatus"]) == (model_id, "DONE")
                assert done["metadata"]["printability"]["pendingChecks"] == ["THIN_WALLS"]
                # Again once the wall check (run after DONE) has its verdict: a 0.4 mm
                # plate is too thin.
                got = await _next(mine, 60)
                checked = got["payload"]["data"]["modelAnalysis"]
                assert checked["analysisStatus"] == "DONE"
                assert checked["metadata"]["printability"] == {
                    "pendingChecks": [], "issues": [{"code": "THIN_WALLS"}]
                }
                await _nothing(foreign, 0.3)
                # A provider may not follow analyses at all (Model.analysisStatus is the
                # customer's): refused for its role, whatever the model.
                refused = await _next(providers)
                assert refused["type"] == "error"
                assert refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=30)
            redis.Redis.from_url(broker).flushdb()
        await api.client.aclose()


async def test_the_documented_subscription_client_works(
    database: str, database_url: str, settings: Any, tmp_path: Path
) -> None:
    """The example of docs/provider-integration.md, run as written (only the host differs)."""
    guide = GUIDE.read_text()
    section = guide.split("### A live view: GraphQL subscriptions", 1)[1]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    with _servers(_env(settings, database_url, tmp_path), tmp_path, 1) as (server,):
        script = tmp_path / "follow.py"
        script.write_text(source.replace("wss://print.example.com/graphql", server.ws))
        api = _client(server, settings)
        customer, _, provider, staff, p1, _, model = await _cast(api)
        order_id = await _request_order(api, customer, model)
        await api.ok(ASSIGN, {"o": order_id, "p": str(p1.id)}, staff.token)
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), env={**os.environ, "TOKEN": provider.token},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            await asyncio.sleep(2.0)  # connected and subscribed
            await api.ok(STEP, {"o": order_id, "s": "ACCEPTED"}, provider.token)
            line = await asyncio.wait_for(process.stdout.readline(), 20)
        finally:
            process.terminate()
            await process.wait()
        assert "'status': 'ACCEPTED'" in line.decode(), line
        await api.client.aclose()
