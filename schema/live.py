"""What both subscriptions share: the caller re-checked and caches dropped per event.

A subscription listens on one event-bus topic. Each event is answered only after the
caller's token is checked again (a revoked session or a deleted account ends the
subscription) and with a fresh policy view (no relation computed for an earlier event
is reused), so a provider that declined an order stops receiving it at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from domain import auth
from domain.errors import BadUserInput, DomainError
from runtime.events import Overflow
from schema.context import Context

MAX_SUBSCRIPTIONS_PER_CONNECTION = 20
# Events a subscriber may fall behind before the oldest are dropped: with the socket's
# own flow control this bounds what a client that never reads can make the server hold.
LIVE_QUEUE = 32


async def events_on(context: Context, topic: str) -> AsyncIterator[dict[str, Any]]:
    """The messages published on `topic`, while the caller's credentials hold."""
    bus = getattr(context.services, "events", None)
    if bus is None or context.token is None:
        return
    if context.live_subscriptions >= MAX_SUBSCRIPTIONS_PER_CONNECTION:
        raise BadUserInput(
            f"At most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions per connection."
        )
    context.live_subscriptions += 1
    try:
        subscription = bus.subscribe([topic], max_queue=LIVE_QUEUE, overflow=Overflow.DROP_OLDEST)
        async with subscription as events:
            async for event in events:
                if not await _still_signed_in(context):
                    return
                yield event.message
    finally:
        context.live_subscriptions -= 1


async def _still_signed_in(context: Context) -> bool:
    assert context.token is not None
    try:
        viewer, user = await auth.authenticate(context.settings, context.token)
    except DomainError:
        return False
    context.set_viewer(viewer, user)
    context.refresh()
    return True
