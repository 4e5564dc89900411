"""The event bus behind GraphQL subscriptions: publish(topic, message) / subscribe(topics).

Two implementations, one interface:
- InProcessEventBus: the default of `make run` (one process).
- RedisEventBus: Redis pub/sub (REDIS_URL), so an event published by one server process or
  worker reaches subscribers connected to any other. One Redis connection per process is
  shared by all its subscriptions; channels are subscribed while someone listens.

Messages are JSON objects (ids and statuses, never file contents), at most
MAX_MESSAGE_BYTES; both buses round-trip them through JSON, so they behave alike.

Memory stays bounded whatever subscribers do: publishing never waits for a subscriber,
and each subscription has its own queue of at most `max_queue` events. When it is full,
the overflow policy decides: DROP_OLDEST keeps the newest events (counting the dropped
ones), DISCONNECT ends the subscription with SubscriptionOverflow, so the client can
reconnect and re-read the current state instead of silently missing an event.
Delivery is at most once: pub/sub keeps nothing for a subscriber that is not connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("printvault.events")

MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_MAX_QUEUE = 100
MAX_TOPICS_PER_SUBSCRIPTION = 100
SUBSCRIBE_TIMEOUT_S = 5.0
REDIS_TIMEOUT_S = 5.0
_TOPIC = re.compile(r"[A-Za-z0-9:._-]{1,200}")


class Overflow(StrEnum):
    DROP_OLDEST = "drop_oldest"
    DISCONNECT = "disconnect"


class SubscriptionOverflow(Exception):
    """The subscriber fell `max_queue` events behind and was dropped."""


@dataclass(frozen=True)
class Event:
    topic: str
    message: dict[str, Any]


_CLOSED = object()


class Subscription:
    """Async iterator of Events on some topics; use it as `async with` (see EventBus)."""

    def __init__(
        self, bus: EventBus, topics: Iterable[str], max_queue: int, overflow: Overflow
    ) -> None:
        self.topics = frozenset(_check_topic(topic) for topic in topics)
        if not self.topics or len(self.topics) > MAX_TOPICS_PER_SUBSCRIPTION:
            raise ValueError(f"subscribe to 1 to {MAX_TOPICS_PER_SUBSCRIPTION} topics")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.dropped = 0
        self.overflowed = False
        self._bus = bus
        self._overflow = overflow
        # One slot more than max_queue for the end marker, which must always fit.
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=max_queue + 1)
        self._max = max_queue
        self._open = False

    async def __aenter__(self) -> Subscription:
        await self._bus._attach(self)
        self._open = True
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            await self._bus._detach(self)
        self._end()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is _CLOSED:
            self._end()  # keep the marker for any further reader
            if self.overflowed:
                raise SubscriptionOverflow(f"fell {self._max} events behind")
            raise StopAsyncIteration
        assert isinstance(item, Event)
        return item

    def pending(self) -> int:
        return self._queue.qsize()

    def offer(self, event: Event) -> None:
        """Called by the bus; never blocks, never lets the queue grow past max_queue."""
        if not self._open:
            return
        if self._queue.qsize() >= self._max:
            if self._overflow is Overflow.DISCONNECT:
                self.overflowed = True
                self._open = False
                self._bus._detach_soon(self)
                self._drain()
                self._end()
                return
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def _end(self) -> None:
        # The queue has one slot beyond max_queue, so the end marker always fits.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_CLOSED)


class EventBus:
    """The interface; subclasses implement publish, _attach, _detach and close."""

    def __init__(self) -> None:
        self._topics: dict[str, set[Subscription]] = {}

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def subscribe(
        self,
        topics: Iterable[str],
        max_queue: int = DEFAULT_MAX_QUEUE,
        overflow: Overflow = Overflow.DROP_OLDEST,
    ) -> Subscription:
        """`async with bus.subscribe(["order:1"]) as events: async for event in events:`

        Events published after the `async with` block is entered are delivered.
        """
        return Subscription(self, topics, max_queue, overflow)

    async def close(self) -> None:
        for subscriptions in list(self._topics.values()):
            for subscription in list(subscriptions):
                await subscription.aclose()

    def subscriber_count(self) -> int:
        return len({id(sub) for subs in self._topics.values() for sub in subs})

    async def _attach(self, subscription: Subscription) -> None:
        raise NotImplementedError

    async def _detach(self, subscription: Subscription) -> None:
        raise NotImplementedError

    def _detach_soon(self, subscription: Subscription) -> None:
        # offer() runs inside publish/dispatch and must not await; the subscription is
        # already closed (it takes no more events), its registration goes in the background.
        task = asyncio.get_running_loop().create_task(self._detach(subscription))
        task.add_done_callback(lambda done: done.exception() if not done.cancelled() else None)

    def _register(self, subscription: Subscription) -> list[str]:
        """Adds it; returns the topics nobody listened to before."""
        new = [topic for topic in subscription.topics if topic not in self._topics]
        for topic in subscription.topics:
            self._topics.setdefault(topic, set()).add(subscription)
        return new

    def _unregister(self, subscription: Subscription) -> list[str]:
        """Removes it; returns the topics nobody listens to any more."""
        gone = []
        for topic in subscription.topics:
            listeners = self._topics.get(topic)
            if listeners is None or subscription not in listeners:
                continue
            listeners.discard(subscription)
            if not listeners:
                del self._topics[topic]
                gone.append(topic)
        return gone

    def _dispatch(self, topic: str, encoded: bytes) -> None:
        for subscription in list(self._topics.get(topic, ())):
            # Each subscriber decodes its own copy: one cannot alter what another sees.
            subscription.offer(Event(topic, json.loads(encoded)))


class InProcessEventBus(EventBus):
    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        self._dispatch(_check_topic(topic), _encode(message))

    async def _attach(self, subscription: Subscription) -> None:
        self._register(subscription)

    async def _detach(self, subscription: Subscription) -> None:
        self._unregister(subscription)


class RedisEventBus(EventBus):
    def __init__(self, redis_url: str, prefix: str = "printvault:events:") -> None:
        super().__init__()
        self._redis = aioredis.Redis.from_url(
            redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
            health_check_interval=30,  # notices a silently dead pub/sub connection
        )
        self.publish_failures = 0
        self._prefix = prefix
        self._pubsub = self._redis.pubsub()
        self._reader: asyncio.Task | None = None
        self._confirmations: dict[str, list[asyncio.Future]] = {}
        self._lock = asyncio.Lock()

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        """Best effort, like pub/sub itself: Redis being down must not fail the change
        that caused the event (the order is updated; live views re-read on reconnect)."""
        channel, encoded = self._prefix + _check_topic(topic), _encode(message)
        try:
            await self._redis.publish(channel, encoded)
        except (RedisError, OSError) as error:
            self.publish_failures += 1
            log.warning("event bus: publish failed (%s); the event is lost", type(error).__name__)

    async def _attach(self, subscription: Subscription) -> None:
        async with self._lock:
            new = self._register(subscription)
            if not new:
                return
            loop = asyncio.get_running_loop()
            waiting = []
            for topic in new:
                future = loop.create_future()
                self._confirmations.setdefault(self._prefix + topic, []).append(future)
                waiting.append(future)
            try:
                await self._pubsub.subscribe(*(self._prefix + topic for topic in new))
                if self._reader is None or self._reader.done():
                    self._reader = loop.create_task(self._read())
                # Only once Redis confirms is a publish guaranteed to reach us.
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                    await asyncio.gather(*waiting)
            except BaseException:
                self._unregister(subscription)
                for future in waiting:
                    future.cancel()
                raise

    async def _detach(self, subscription: Subscription) -> None:
        async with self._lock:
            gone = self._unregister(subscription)
            if gone:
                with contextlib.suppress(RedisError, ConnectionError):
                    await self._pubsub.unsubscribe(*(self._prefix + topic for topic in gone))

    async def close(self) -> None:
        await super().close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError):
                await self._reader
        await self._pubsub.aclose()
        await self._redis.aclose()

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, ConnectionError):
                # redis-py reconnects and re-subscribes on the next read; events published
                # meanwhile are lost (pub/sub is at most once).
                log.warning("event bus: Redis connection lost; reconnecting")
                await asyncio.sleep(1.0)
                continue
            except Exception:
                # The reader serves every subscription of this process: it must not die.
                log.exception("event bus: unexpected error while reading")
                await asyncio.sleep(1.0)
                continue
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        channel = _text(message.get("channel"))
        if message["type"] == "subscribe":
            for future in self._confirmations.pop(channel, []):
                if not future.done():
                    future.set_result(None)
        elif message["type"] == "message" and channel.startswith(self._prefix):
            data = message["data"]
            if len(data) > MAX_MESSAGE_BYTES:
                return
            try:
                decoded = json.loads(data)
            except ValueError:
                return  # not ours: every publisher here writes JSON objects
            if isinstance(decoded, dict):
                self._dispatch(channel[len(self._prefix) :], data)


def make_event_bus(redis_url: str = "", prefix: str = "printvault:events:") -> EventBus:
    return RedisEventBus(redis_url, prefix) if redis_url else InProcessEventBus()


def _check_topic(topic: str) -> str:
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        raise ValueError("topics are 1 to 200 characters of A-Z a-z 0-9 : . _ -")
    return topic


def _encode(message: dict[str, Any]) -> bytes:
    if not isinstance(message, dict):
        raise TypeError("an event message is a JSON object")
    encoded = json.dumps(message, separators=(",", ":")).encode()
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise ValueError(f"event messages are at most {MAX_MESSAGE_BYTES} bytes")
    return encoded


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
