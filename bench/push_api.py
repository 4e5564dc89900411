"""End-to-end push figures through a real server process (used by bench/push.py).

4. updateOrderStatus -> the subscriber's websocket message and -> the webhook POST at a
   loopback receiver, one change at a time (each on its own ASSIGNED order, moved to
   ACCEPTED by the provider over HTTP). Floor: the mutation's own HTTP round trip.
5. Idle subscriptions per server: N websocket connections, each authenticated with one
   `orderEvents(orderId)` subscription; the server's RSS before and after (memory per
   connection), and /healthz latency while they are open.

The server is `server.py serve` on a fresh DATA_DIR (SQLite, in-process bus and jobs),
with WEBHOOK_ALLOW_PRIVATE_NETWORKS=1 for the loopback receiver. Rows the API has no
mutation for in one step (the provider, the orders) are written with the ORM into the
server's database, with session tokens from domain/auth.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import ClientConnection, connect

from bench.common import (
    child_env,
    fmt,
    free_port,
    percentile,
    sign_up,
    subprocess_running,
    wait_healthy,
)
from domain import auth
from domain.enums import AnalysisStatus, CompanyKind, Role
from domain.order_states import OrderStatus
from runtime.settings import load_settings
from storage import db
from storage.models import Company, Model3D, Order, OrderEvent, User

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = "graphql-transport-ws"
ACCEPT = "mutation($o: ID!) { updateOrderStatus(orderId: $o, status: ACCEPTED) { id } }"
ADDRESS = {"line1": "Hauptstr. 1", "postalCode": "10115", "city": "Berlin", "country": "DE"}


def report(label: str, seconds: list[float]) -> None:
    ms = [value * 1000 for value in seconds]
    print(
        f"  {label:<34} p50 {fmt(percentile(ms, 50), '7.3f')} ms   "
        f"p99 {fmt(percentile(ms, 99), '7.3f')} ms   n={len(ms)}"
    )


class Hooks:
    """A loopback webhook receiver that notes when each POST's body arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.event = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = json.loads(await reader.readexactly(length))
        self.arrived[body["data"]["orderId"]] = time.perf_counter()
        self.event.set()
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


async def _subscribe(url: str, token: str, order_id: str | None) -> ClientConnection:
    socket = await connect(url, subprotocols=[PROTOCOL], open_timeout=30, max_queue=4)
    await socket.send(json.dumps(
        {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
    ))
    assert json.loads(await socket.recv())["type"] == "connection_ack"
    await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription($o: ID) { orderEvents(orderId: $o) { status } }",
        "variables": {"o": order_id},
    }}))
    return socket


async def _world(data_dir: Path, customer_token: str, orders: int) -> tuple[str, list[str]]:
    """A provider (session token) and `orders` orders of the customer, ASSIGNED to it."""
    settings = load_settings({"DATA_DIR": str(data_dir)})
    await db.connect(settings.database_url, apply_migrations=False)
    _, customer = await auth.authenticate(settings, customer_token)
    print_service = await Company.create(name="Bench Druck", kind=CompanyKind.PRINT_SERVICE)
    provider = await User.create(
        email=f"provider-{os.getpid()}@example.com", first_name="P", last_name="B",
        role=Role.PROVIDER, company=print_service, password_hash="x",
    )
    token = (await auth.start_session(settings, provider, "127.0.0.1")).token
    model = await Model3D.create(
        company_id=customer.company_id, owner_id=customer.id, name="bench", file_name="b.stl",
        format="stl", object_key="models/bench", wrapped_key="x",
        analysis_status=AnalysisStatus.DONE,
    )
    ids = []
    for _ in range(orders):
        order = await Order.create(
            model_id=model.id, customer_id=customer.id, company_id=customer.company_id,
            provider_id=print_service.id, status=OrderStatus.ASSIGNED, quantity=1,
            material="PETG", shipping_address=ADDRESS, billing_address=ADDRESS,
        )
        await OrderEvent.create(order_id=order.id, status=OrderStatus.ASSIGNED)
        ids.append(str(order.id))
    await db.disconnect()
    return token, ids


@contextlib.asynccontextmanager
async def _server(data_dir: Path) -> AsyncIterator[str]:
    port = free_port()
    env = child_env(DATA_DIR=str(data_dir), PORT=str(port), HOST="127.0.0.1",
                    WEBHOOK_ALLOW_PRIVATE_NETWORKS="1", BACKUP_PERIOD_SECONDS="0",
                    RATE_LIMITS="order_step_user=100000/hour")
    log = data_dir / "server.log"
    with subprocess_running([str(ROOT / ".venv/bin/python"), "server.py", "serve"], env,
                            log) as process:
        base = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_healthy, base, process, "/healthz", log)
        yield base
        # the process is stopped by subprocess_running


async def end_to_end(events: int, connections: int) -> None:
    with tempfile.TemporaryDirectory(prefix="pv-bench-push-") as directory:
        data_dir = Path(directory)
        async with _server(data_dir) as base:
            customer_token = await asyncio.to_thread(sign_up, base, "Bench GmbH")
            provider_token, order_ids = await _world(data_dir, customer_token, events)
            ws_url = base.replace("http", "ws", 1) + "/graphql"
            await _latency(base, ws_url, customer_token, provider_token, order_ids)
            await _idle(base, ws_url, customer_token, order_ids[0], connections)


async def _latency(
    base: str, ws_url: str, customer: str, provider: str, order_ids: list[str]
) -> None:
    hooks = Hooks()
    receiver = await asyncio.start_server(hooks.serve, "127.0.0.1", 0)
    hook_url = f"http://127.0.0.1:{receiver.sockets[0].getsockname()[1]}/hook"
    headers = {"Authorization": f"Bearer {customer}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        created = await client.post("/graphql", headers=headers, json={
            "query": "mutation($u: String!) { createWebhook(url: $u, "
                     'events: ["order.status_changed"]) { secret } }',
            "variables": {"u": hook_url},
        })
        assert not created.json().get("errors"), created.text
        socket = await _subscribe(ws_url, customer, None)
        await asyncio.sleep(0.5)
        to_socket: list[float] = []
        to_hook: list[float] = []
        floor: list[float] = []
        for order_id in order_ids:
            started = time.perf_counter()
            answer = await client.post("/graphql", json={"query": ACCEPT,
                                                         "variables": {"o": order_id}},
                                       headers={"Authorization": f"Bearer {provider}"})
            floor.append(time.perf_counter() - started)
            assert not answer.json().get("errors"), answer.text
            message = json.loads(await asyncio.wait_for(socket.recv(), 30))
            to_socket.append(time.perf_counter() - started)
            assert message["type"] == "next", message
            while order_id not in hooks.arrived:
                hooks.event.clear()
                await asyncio.wait_for(hooks.event.wait(), 30)
            to_hook.append(hooks.arrived[order_id] - started)
        await socket.close()
    receiver.close()
    print(f"\n4. updateOrderStatus -> push, {len(order_ids)} changes one at a time "
          "(real server, SQLite, in-process bus and jobs)")
    report("floor: the mutation's HTTP answer", floor)
    report("-> subscriber's websocket message", to_socket)
    report("-> webhook POST at the receiver", to_hook)


async def _idle(base: str, ws_url: str, token: str, order_id: str, count: int) -> None:
    process = next(p for p in psutil.process_iter(["cmdline"])
                   if p.info["cmdline"] and "serve" in p.info["cmdline"]
                   and any(str(arg).endswith("server.py") for arg in p.info["cmdline"])
                   and _listens_for(p, base))
    before = process.memory_info().rss
    sockets = []
    started = time.perf_counter()
    for start in range(0, count, 50):
        batch = min(50, count - start)
        sockets += await asyncio.gather(*(_subscribe(ws_url, token, order_id)
                                          for _ in range(batch)))
    opening = time.perf_counter() - started
    await asyncio.sleep(2.0)
    after = process.memory_info().rss
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        health = []
        for _ in range(20):
            t0 = time.perf_counter()
            (await client.get("/healthz")).raise_for_status()
            health.append(time.perf_counter() - t0)
    for socket in sockets:
        await socket.close()
    print(f"\n5. idle subscriptions on one server: {count} websocket connections, "
          "one orderEvents each")
    print(f"  opened in {opening:.1f} s; server RSS {before / 1e6:.1f} -> {after / 1e6:.1f} MB: "
          f"{(after - before) / count / 1024:.1f} KiB per connection")
    report("/healthz while they are open", health)


def _listens_for(process: Any, base: str) -> bool:
    port = int(base.rsplit(":", 1)[1])
    try:
        return any(c.laddr and c.laddr.port == port for c in process.net_connections("tcp"))
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return False
