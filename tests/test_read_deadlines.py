"""The read deadlines of web/protocol.py where a real client cannot steer them: the
body clock must not run against a client while the server itself is not reading.

The protocol is driven directly (a stand-in transport, uvicorn's real h11 code);
the slow-client cases against the real server are in test_request_limits.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import uvicorn
from uvicorn.server import ServerState

from runtime.settings import Settings
from web.protocol import protocol_for


class StandInTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.reading = True
        self.written = bytearray()

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def write(self, data) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def _app_that_never_reads(scope, receive, send) -> None:
    if scope["type"] == "http":
        await asyncio.sleep(3600)  # busy elsewhere; the body waits in uvicorn's buffer


def _connection(settings: Settings, body_timeout: float):
    limits = replace(settings, request_body_timeout_seconds=body_timeout, request_body_min_rate=10**9)
    config = uvicorn.Config(_app_that_never_reads, lifespan="off")
    config.load()
    state = ServerState()
    protocol = protocol_for(limits)(config=config, server_state=state, app_state={})
    transport = StandInTransport()
    protocol.connection_made(transport)
    return protocol, transport, state


async def _stop(state: ServerState) -> None:
    for task in state.tasks:
        task.cancel()
    await asyncio.gather(*state.tasks, return_exceptions=True)


async def test_the_body_clock_stops_while_the_server_is_not_reading(settings: Settings) -> None:
    protocol, transport, state = _connection(settings, body_timeout=0.2)
    head = b"POST /graphql HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n"
    protocol.data_received(head + b"a" * 100_000)  # more than uvicorn buffers: it pauses
    assert not transport.reading
    await asyncio.sleep(0.8)  # four time-outs long: the client is waiting on us
    assert not transport.closed
    protocol.flow.resume_reading()  # the app reads again; now the client is the slow side
    await asyncio.sleep(0.8)
    assert transport.closed
    protocol.connection_lost(None)
    await _stop(state)


async def test_a_silent_client_is_cut_off_when_the_server_reads(settings: Settings) -> None:
    protocol, transport, state = _connection(settings, body_timeout=0.2)
    protocol.data_received(b"POST /graphql HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
    await asyncio.sleep(0.8)
    assert transport.closed and transport.written == b""  # cut off without an answer
    protocol.connection_lost(None)
    await _stop(state)


async def test_a_complete_request_has_no_deadline(settings: Settings) -> None:
    protocol, transport, state = _connection(settings, body_timeout=0.2)
    protocol.data_received(b"POST /graphql HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab")
    await asyncio.sleep(0.8)  # the app takes its time; that is not the client's fault
    assert not transport.closed
    protocol.connection_lost(None)
    await _stop(state)
