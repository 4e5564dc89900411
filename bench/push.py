"""Push-path benchmark: the event bus and one webhook try, each next to a floor.

Prints figures only; it never passes or fails on time. Everything runs in this process
against loopback sockets and the local Redis (skipped, with the reason, when absent):

1. Event bus latency, publish -> the subscriber's `async for`, one event at a time
   (--events, default 1,000): in-process bus; Redis bus; floor: bare redis-py PUBLISH
   read by a bare pub/sub `get_message` on the same server.
2. One webhook try, sign + SSRF check + POST + capped read, to a loopback receiver that
   answers 204 (allow_private, since the receiver is on loopback); floor: a bare httpx
   POST with a new client and connection per request, CA bundle loaded once (what the
   sender does, minus signing and guard); peer: a kept-alive httpx client (what a new,
   pinned connection per try forgoes).
3. Idle subscriptions: --subscriptions (default 10,000) open subscriptions on distinct
   topics, memory per subscription by tracemalloc (Python heap of this process; the
   Redis server's own memory is not included).

4./5. Through a real server process (bench/push_api.py): updateOrderStatus -> the
   subscriber's websocket message and -> the webhook POST (p50/p99 over --events
   changes), and --connections idle websocket subscriptions on one server (memory per
   connection from the server's RSS).

Run: `.venv/bin/python bench/push.py [--events 1000] [--subscriptions 10000]
[--connections 1000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bench.common import fmt, percentile, print_machine
from domain import webhooks
from runtime.events import EventBus, InProcessEventBus, RedisEventBus
from runtime.webhook_delivery import WebhookSender

REDIS_URL = "redis://127.0.0.1:6379/0"


def report(label: str, seconds: list[float], note: str = "") -> None:
    ms = [value * 1000 for value in seconds]
    print(
        f"  {label:<34} p50 {fmt(percentile(ms, 50), '7.3f')} ms   "
        f"p99 {fmt(percentile(ms, 99), '7.3f')} ms   n={len(ms)} {note}"
    )


async def bus_latency(bus: EventBus, events: int) -> list[float]:
    latencies = []
    async with bus.subscribe(["bench:order"], max_queue=events) as subscription:
        iterator = subscription.__aiter__()
        for sequence in range(events):
            started = time.perf_counter()
            await bus.publish("bench:order", {"orderId": sequence, "status": "SHIPPED"})
            event = await asyncio.wait_for(iterator.__anext__(), 10)
            latencies.append(time.perf_counter() - started)
            assert event.message["orderId"] == sequence
    return latencies


async def raw_redis_latency(events: int) -> list[float]:
    client = aioredis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    channel = f"bench:{uuid.uuid4().hex}"
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    latencies = []
    try:
        for sequence in range(events):
            started = time.perf_counter()
            await client.publish(channel, str(sequence))
            message = None
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
            latencies.append(time.perf_counter() - started)
    finally:
        await pubsub.aclose()
        await client.aclose()
    return latencies


async def receiver() -> tuple[asyncio.Server, int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def timed(count: int, attempt: Callable[[], Awaitable[int]]) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        status = await attempt()
        latencies.append(time.perf_counter() - started)
        assert status == 204, status
    return latencies


async def webhook_latency(events: int) -> None:
    server, port = await receiver()
    url = f"http://127.0.0.1:{port}/hook"
    secret, body = webhooks.new_secret(), webhooks.encode_body({"type": "order.assigned"})
    sender = WebhookSender(allow_private=True)

    async def signed() -> int:
        attempt = await sender.send_signed(url, secret, webhooks.new_message_id(), body)
        return attempt.status_code or 0

    ssl_context = httpx.create_ssl_context()

    async def fresh_client() -> int:
        async with httpx.AsyncClient(
            trust_env=False,
            verify=ssl_context,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            return (await client.post(url, content=body)).status_code

    kept = httpx.AsyncClient(trust_env=False)

    async def kept_alive() -> int:
        return (await kept.post(url, content=body)).status_code

    try:
        for name, attempt in (("floor", fresh_client), ("sender", signed), ("peer", kept_alive)):
            await timed(20, attempt)  # warm-up
            results = await timed(events, attempt)
            label = {
                "floor": "floor: httpx, new connection",
                "sender": "WebhookSender.send_signed",
                "peer": "peer: httpx, kept-alive client",
            }[name]
            report(label, results)
    finally:
        await kept.aclose()
        server.close()
        await server.wait_closed()


async def idle_memory(bus: EventBus, count: int) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    subscriptions = [bus.subscribe([f"bench:idle:{n}"]) for n in range(count)]
    for subscription in subscriptions:
        await subscription.__aenter__()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for subscription in subscriptions:
        await subscription.aclose()
    return (after - before) / count


async def redis_available() -> str | None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        return str(error)
    finally:
        await client.aclose()
    return None


async def main(events: int, subscriptions: int, connections: int) -> None:
    print_machine()
    redis_problem = await redis_available()
    print(f"\n1. event bus: publish -> subscriber, {events} events one at a time")
    in_process = InProcessEventBus()
    report("in-process bus", await bus_latency(in_process, events))
    if redis_problem:
        print(f"  Redis SKIPPED: {redis_problem}")
    else:
        report("floor: bare redis-py pub/sub", await raw_redis_latency(events))
        bus = RedisEventBus(REDIS_URL, f"bench:{uuid.uuid4().hex}:")
        try:
            report("RedisEventBus", await bus_latency(bus, events))
        finally:
            await bus.close()

    print(f"\n2. one webhook try to a loopback receiver (204), {events} tries one at a time")
    await webhook_latency(events)

    print(f"\n3. idle subscriptions: {subscriptions} on distinct topics, Python heap")
    per = await idle_memory(InProcessEventBus(), subscriptions)
    print(f"  in-process bus                     {per:8.0f} bytes per subscription")
    if not redis_problem:
        bus = RedisEventBus(REDIS_URL, f"bench:{uuid.uuid4().hex}:")
        try:
            per = await idle_memory(bus, subscriptions)
            print(f"  RedisEventBus                      {per:8.0f} bytes per subscription")
        finally:
            await bus.close()

    from bench.push_api import end_to_end  # needs the API and a server process

    await end_to_end(events, connections)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=10000)
    parser.add_argument("--connections", type=int, default=1000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.subscriptions, arguments.connections))
