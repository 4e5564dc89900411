"""runtime/events.py: the in-process bus, and the Redis bus across two OS processes.

Redis tests are skipped when Redis is unreachable, unless REQUIRE_REDIS=1 (CI).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from runtime.events import (
    MAX_MESSAGE_BYTES,
    EventBus,
    InProcessEventBus,
    Overflow,
    RedisEventBus,
    SubscriptionOverflow,
    make_event_bus,
)
from tests.helpers import REDIS_URL

REPO = Path(__file__).resolve().parent.parent


def _redis_or_skip() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis required (REQUIRE_REDIS=1) but unreachable: {error}")
        pytest.skip(f"Redis SKIPPED: unreachable at {REDIS_URL}: {error}")
    return REDIS_URL


@pytest.fixture(params=["in-process", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    if request.param == "redis":
        made: EventBus = RedisEventBus(_redis_or_skip(), f"pvtest:{uuid.uuid4().hex}:")
    else:
        made = InProcessEventBus()
    try:
        yield made
    finally:
        await made.close()


async def _take(events, count: int, within: float = 10) -> list:
    received = []
    async with asyncio.timeout(within):
        async for event in events:
            received.append(event)
            if len(received) == count:
                break
    return received


async def test_events_reach_the_subscribers_of_their_topic_only(bus: EventBus) -> None:
    await bus.publish("order:1", {"status": "EARLY"})  # before anyone listens: gone
    async with (
        bus.subscribe(["order:1"]) as one,
        bus.subscribe(["order:1", "model:7"]) as both,
        bus.subscribe(["order:2"]) as other,
    ):
        await bus.publish("order:1", {"status": "ASSIGNED"})
        await bus.publish("model:7", {"analysisStatus": "DONE"})
        first = await _take(one, 1)
        second = await _take(both, 2)
        assert other.pending() == 0
    assert [(e.topic, e.message) for e in first] == [("order:1", {"status": "ASSIGNED"})]
    assert [(e.topic, e.message) for e in second] == [
        ("order:1", {"status": "ASSIGNED"}),
        ("model:7", {"analysisStatus": "DONE"}),
    ]
    assert bus.subscriber_count() == 0


async def test_each_subscriber_gets_its_own_copy(bus: EventBus) -> None:
    async with bus.subscribe(["t"]) as a, bus.subscribe(["t"]) as b:
        await bus.publish("t", {"ids": [1]})
        [event_a], [event_b] = await _take(a, 1), await _take(b, 1)
    event_a.message["ids"].append(2)
    assert event_b.message == {"ids": [1]}


async def test_a_slow_consumer_keeps_only_the_newest_events(bus: EventBus) -> None:
    total, bound = 2000, 10
    async with (
        bus.subscribe(["flood"], max_queue=bound) as slow,
        bus.subscribe(["flood"], max_queue=total) as fast,
    ):
        for sequence in range(total):
            await bus.publish("flood", {"seq": sequence})
        everything = await _take(fast, total, within=30)  # the flood has fully arrived
        assert slow.pending() == bound and slow.dropped == total - bound
        kept = await _take(slow, bound)
    assert [event.message["seq"] for event in everything] == list(range(total))
    assert [event.message["seq"] for event in kept] == list(range(total - bound, total))


async def test_a_slow_consumer_can_be_disconnected_instead(bus: EventBus) -> None:
    async with bus.subscribe(["flood"], max_queue=5, overflow=Overflow.DISCONNECT) as slow:
        async with bus.subscribe(["flood"]) as witness:
            for sequence in range(6):
                await bus.publish("flood", {"seq": sequence})
            await _take(witness, 6)
        assert slow.overflowed and slow.pending() <= 1  # only the end marker is kept
        with pytest.raises(SubscriptionOverflow):
            await _take(slow, 1)
        with pytest.raises(SubscriptionOverflow):  # and it stays ended
            await _take(slow, 1)
    for _ in range(50):
        if bus.subscriber_count() == 0:
            break
        await asyncio.sleep(0.05)
    assert bus.subscriber_count() == 0


async def test_closing_a_subscription_ends_a_waiting_reader(bus: EventBus) -> None:
    subscription = bus.subscribe(["quiet"])
    await subscription.__aenter__()
    reader = asyncio.ensure_future(_take(subscription, 1))
    await asyncio.sleep(0.05)
    await subscription.aclose()
    assert await asyncio.wait_for(reader, 5) == []


async def test_bad_topics_and_messages_are_refused(bus: EventBus) -> None:
    for topic in ("", "has space", "x" * 201, "order:1\n"):
        with pytest.raises(ValueError):
            await bus.publish(topic, {})
        with pytest.raises(ValueError):
            bus.subscribe([topic])
    with pytest.raises(ValueError):
        await bus.publish("t", {"blob": "x" * MAX_MESSAGE_BYTES})
    with pytest.raises(TypeError):
        await bus.publish("t", ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bus.subscribe([f"t{n}" for n in range(101)])
    with pytest.raises(ValueError):
        bus.subscribe(["t"], max_queue=0)


def test_make_event_bus_picks_the_implementation() -> None:
    assert isinstance(make_event_bus(""), InProcessEventBus)
    assert isinstance(make_event_bus("redis://127.0.0.1:6379/0"), RedisEventBus)


# --- Redis across OS processes ------------------------------------------------------------


async def _peer(mode: str, prefix: str, topic: str, count: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "tests" / "event_bus_peer.py"),
        mode,
        REDIS_URL,
        prefix,
        topic,
        str(count),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    return (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()


async def test_redis_carries_events_to_a_subscriber_in_another_process() -> None:
    _redis_or_skip()
    prefix, count = f"pvtest:{uuid.uuid4().hex}:", 50
    peer = await _peer("subscribe", prefix, "order:42", count)
    bus = RedisEventBus(REDIS_URL, prefix)
    try:
        assert await _line(peer) == "ready"
        for sequence in range(count):
            await bus.publish("order:99", {"seq": -1})  # another topic: never arrives
            await bus.publish("order:42", {"seq": sequence})
        lines = [json.loads(await _line(peer)) for _ in range(count)]
        assert await asyncio.wait_for(peer.wait(), 30) == 0
    finally:
        await bus.close()
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    assert lines == [{"topic": "order:42", "seq": n} for n in range(count)]


async def test_redis_carries_events_from_a_publisher_in_another_process() -> None:
    _redis_or_skip()
    prefix, count = f"pvtest:{uuid.uuid4().hex}:", 50
    bus = RedisEventBus(REDIS_URL, prefix)
    peer = await _peer("publish", prefix, "model:7", count)
    try:
        async with bus.subscribe(["model:7"], max_queue=count) as events:
            assert peer.stdin is not None
            peer.stdin.write(b"go\n")
            await peer.stdin.drain()
            received = await _take(events, count, within=30)
        assert await _line(peer) == "done"
        assert await asyncio.wait_for(peer.wait(), 30) == 0
    finally:
        await bus.close()
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    assert [event.message for event in received] == [
        {"seq": n, "from": "peer"} for n in range(count)
    ]


async def test_redis_channels_are_released_when_nobody_listens() -> None:
    prefix = f"pvtest:{uuid.uuid4().hex}:"
    bus = RedisEventBus(_redis_or_skip(), prefix)
    probe = aioredis.Redis.from_url(REDIS_URL)
    channel = prefix + "order:5"
    try:
        async with bus.subscribe(["order:5"]), bus.subscribe(["order:5"]):
            assert dict(await probe.pubsub_numsub(channel))[channel.encode()] == 1
        assert dict(await probe.pubsub_numsub(channel))[channel.encode()] == 0
        async with bus.subscribe(["order:5"], max_queue=1, overflow=Overflow.DISCONNECT):
            await bus.publish("order:5", {"n": 1})
            await bus.publish("order:5", {"n": 2})  # overflow: dropped in the background
            for _ in range(100):
                if dict(await probe.pubsub_numsub(channel))[channel.encode()] == 0:
                    break
                await asyncio.sleep(0.05)
            assert dict(await probe.pubsub_numsub(channel))[channel.encode()] == 0
    finally:
        await bus.close()
        await probe.aclose()


async def test_redis_down_loses_events_but_never_fails_the_publisher() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    bus = RedisEventBus(f"redis://127.0.0.1:{closed}/0")
    try:
        await bus.publish("order:1", {"status": "SHIPPED"})  # does not raise
        assert bus.publish_failures == 1
        with pytest.raises((redis.RedisError, OSError)):
            async with bus.subscribe(["order:1"]):
                pass  # a subscriber, though, is told at once
        assert bus.subscriber_count() == 0
    finally:
        await bus.close()
