"""A second OS process on the Redis event bus (used by tests/test_events.py).

    python tests/event_bus_peer.py subscribe REDIS_URL PREFIX TOPIC COUNT
        subscribes, prints "ready", then prints each received message as a JSON line
    python tests/event_bus_peer.py publish REDIS_URL PREFIX TOPIC COUNT
        waits for a line on standard input, publishes COUNT messages, prints "done"
"""

from __future__ import annotations

import asyncio
import json
import sys

from runtime.events import RedisEventBus


async def main(mode: str, url: str, prefix: str, topic: str, count: int) -> None:
    bus = RedisEventBus(url, prefix)
    try:
        if mode == "subscribe":
            async with bus.subscribe([topic], max_queue=count + 1) as events:
                print("ready", flush=True)
                received = 0
                async for event in events:
                    print(json.dumps({"topic": event.topic, **event.message}), flush=True)
                    received += 1
                    if received == count:
                        break
        else:
            await asyncio.to_thread(sys.stdin.readline)
            for sequence in range(count):
                await bus.publish(topic, {"seq": sequence, "from": "peer"})
            print("done", flush=True)
    finally:
        await bus.close()


if __name__ == "__main__":
    mode, url, prefix, topic, count = sys.argv[1:6]
    asyncio.run(asyncio.wait_for(main(mode, url, prefix, topic, int(count)), timeout=60))
