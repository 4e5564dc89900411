"""uvicorn's HTTP/1.1 protocol (h11) with read deadlines: slow clients are cut off.

uvicorn times out only idle keep-alive connections, and stops that timer at the
first byte of the next request; it has no time-out for reading a request's headers
or body (its issue #157 lists --timeout-request-start and --timeout-request-complete,
never implemented). So a client that trickles a byte every few seconds holds a
connection and its buffers for ever, and ASGI middleware cannot help with headers:
the app is only called once they are complete. Hence this small subclass.

The deadlines follow Apache's mod_reqtimeout:
- headers must be complete within `header_timeout` seconds of the connection opening
  or of the previous response ending (keep-alive);
- a body gets `body_timeout` seconds, plus one second for every `body_min_rate` bytes
  received. While the server itself is not reading (flow control: the app is busy with
  what it has), the clock restarts instead of counting against the client.
A late client's connection is closed without an answer: it never finished asking.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from runtime.settings import Settings

log = logging.getLogger("printvault.http")


@dataclass(frozen=True)
class ReadLimits:
    header_timeout: float
    body_timeout: float
    body_min_rate: float


class DeadlineH11Protocol(H11Protocol):
    """H11Protocol plus one timer per connection, armed for the phase it is in."""

    limits = ReadLimits(header_timeout=10.0, body_timeout=20.0, body_min_rate=500.0)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None
        self._body_since = 0.0
        self._body_bytes = 0
        super().connection_made(transport)
        self._follow_phase()

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        super().data_received(data)
        self._follow_phase()
        if phase == self._phase == "body":
            self._body_bytes += len(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start the next (pipelined) request
        if not self.transport.is_closing():
            self._follow_phase()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()
        self._phase = "upgraded"  # the WebSocket protocol owns the connection now
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # --- the phases ---

    def _current_phase(self) -> str | None:
        if self._phase == "upgraded":
            return "upgraded"
        theirs, ours = self.conn.their_state, self.conn.our_state
        if theirs is h11.IDLE and ours is h11.IDLE:
            return "headers"  # waiting for the (next) request line and headers
        if theirs is h11.SEND_BODY:
            return "body"
        return None  # the request is in; the app's time is not the client's

    def _follow_phase(self) -> None:
        phase = self._current_phase()
        if phase == self._phase:
            return
        self._phase = phase
        self._disarm()
        if phase == "headers":
            self._arm(self.limits.header_timeout, self._headers_late)
        elif phase == "body":
            self._start_body_clock()

    def _start_body_clock(self) -> None:
        self._body_since = self.loop.time()
        self._body_bytes = 0
        self._arm(self.limits.body_timeout, self._body_check)

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(max(delay, 0.0), callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # --- the deadlines ---

    def _headers_late(self) -> None:
        self._deadline = None
        self._cut_off("request headers not complete within %.1f s", self.limits.header_timeout)

    def _body_check(self) -> None:
        self._deadline = None
        if self.flow is not None and self.flow.read_paused:
            self._start_body_clock()  # we are the slow side; the client is waiting on us
            return
        earned = self._body_bytes / self.limits.body_min_rate if self.limits.body_min_rate else 0
        remaining = self._body_since + self.limits.body_timeout + earned - self.loop.time()
        if remaining > 0:
            self._arm(remaining, self._body_check)
            return
        self._cut_off(
            "request body slower than %d bytes/s after %.1f s",
            self.limits.body_min_rate,
            self.limits.body_timeout,
        )

    def _cut_off(self, reason: str, *args: Any) -> None:
        if self.transport.is_closing():
            return
        log.info("closing a slow connection: " + reason, *args)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app sees http.disconnect, sends nothing
            self.cycle.message_event.set()
        self.transport.close()


def protocol_for(settings: Settings) -> type[H11Protocol]:
    """The protocol class for uvicorn.Config(http=...), with the configured limits."""
    limits = ReadLimits(
        header_timeout=settings.request_header_timeout_seconds,
        body_timeout=settings.request_body_timeout_seconds,
        body_min_rate=float(settings.request_body_min_rate),
    )
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"limits": limits})
