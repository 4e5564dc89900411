"""Issue 10, finding 3 (and the request-level parts of finding 6), against the real
server process: bodies are capped before they are read, multipart text parts are
capped before any log-in check, slow clients are cut off, the server's memory stays
flat under these attacks while normal requests are still served, and every answer
is JSON with a code, never cached.

The server here runs with short time-outs (2 s) so the slow-client tests are quick.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from domain import auth
from runtime.settings import Settings
from server import create_app
from tests.live_server import MB, LiveServer, PeakRss, RawExchange

TIMEOUT = 2.0  # REQUEST_HEADER_TIMEOUT_SECONDS and REQUEST_BODY_TIMEOUT_SECONDS below
# Closed "within the configured time-out": the deadline plus scheduling slack on a
# shared 2-core machine; a connection that is never closed fails after this bound.
CLOSE_BOUND = TIMEOUT + 4.0
MEMORY_BOUND_MB = 50  # the 200 MB body took the unprotected server from 207 MB to 981 MB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp("limits")
    live = LiveServer(
        {
            "DATA_DIR": str(data_dir),
            "REQUEST_HEADER_TIMEOUT_SECONDS": str(TIMEOUT),
            "REQUEST_BODY_TIMEOUT_SECONDS": str(TIMEOUT),
            "BACKUP_PERIOD_SECONDS": "0",
        }
    )
    # Warm up: the first GraphQL request builds caches that would count as growth.
    for _ in range(3):
        httpx.post(live.url + "/graphql", json={"query": "{ __typename }"}, timeout=30)
    yield live
    live.stop()


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _error_code(exchange: RawExchange) -> str:
    return json.loads(exchange.body())["errors"][0]["extensions"]["code"]


def _send_chunks(exchange: RawExchange, chunks: Iterator[bytes]) -> None:
    for chunk in chunks:
        if not exchange.send(chunk):
            return


def _zeros(total: int, size: int = MB) -> Iterator[bytes]:
    block = b"0" * size
    for _ in range(total // size):
        yield block


# --- bodies --------------------------------------------------------------------------------


def test_a_200_mb_json_body_is_refused_from_its_content_length(server: LiveServer) -> None:
    total = 200 * MB
    with PeakRss(server) as memory:
        exchange = RawExchange(server)
        exchange.send(
            _head("POST", "/graphql", {"Content-Type": "application/json", "Content-Length": str(total)})
        )
        _send_chunks(exchange, _zeros(total))
        assert exchange.wait_closed(30), "the server kept the connection open"
    exchange.close()
    assert exchange.status() == 413, bytes(exchange.answer[:300])
    assert _error_code(exchange) == "PAYLOAD_TOO_LARGE"
    assert exchange.sent < total, "the server read the whole body"
    assert memory.growth_mb < MEMORY_BOUND_MB, f"server grew by {memory.growth_mb:.0f} MB"


def test_a_200_mb_chunked_body_is_cut_off_at_the_cap(server: LiveServer) -> None:
    total = 200 * MB
    framed = (f"{MB:x}\r\n".encode() + chunk + b"\r\n" for chunk in _zeros(total))
    with PeakRss(server) as memory:
        exchange = RawExchange(server)
        exchange.send(
            _head(
                "POST",
                "/graphql",
                {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            )
        )
        _send_chunks(exchange, framed)
        exchange.send(b"0\r\n\r\n")
        assert exchange.wait_closed(30), "the server kept the connection open"
    exchange.close()
    assert exchange.status() == 413, bytes(exchange.answer[:300])
    assert _error_code(exchange) == "PAYLOAD_TOO_LARGE"
    assert exchange.sent < total, "the server read the whole body"
    assert memory.growth_mb < MEMORY_BOUND_MB, f"server grew by {memory.growth_mb:.0f} MB"


def test_a_body_under_the_cap_is_served(server: LiveServer) -> None:
    padding = "x" * (512 * 1024)  # 0.5 MiB of variables: under the 1 MiB default
    body = {"query": "query($p: String!) { __type(name: $p) { name } }", "variables": {"p": padding}}
    response = httpx.post(server.url + "/graphql", json=body, timeout=30)
    assert response.status_code == 200 and response.json() == {"data": {"__type": None}}


BOUNDARY = "pvlimits"


def _part(name: str, content: bytes, extra_header: bytes = b"") -> bytes:
    return (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n".encode()
        + extra_header
        + b"\r\n"
        + content
        + b"\r\n"
    )


def _one_big_field() -> Iterator[bytes]:
    yield f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n".encode()
    yield from _zeros(50 * MB)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _many_fields() -> Iterator[bytes]:
    field = b"0" * 60_000  # each under the old 64 KiB per-field check
    for i in range(50 * MB // len(field)):
        yield _part(f"f{i}", field)
    yield f"--{BOUNDARY}--\r\n".encode()


def _huge_part_header() -> Iterator[bytes]:
    yield f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"operations\"\r\nX-Pad: ".encode()
    yield from _zeros(50 * MB)
    yield b"\r\n\r\n{}\r\n" + f"--{BOUNDARY}--\r\n".encode()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (_one_big_field, 413, "PAYLOAD_TOO_LARGE"),
        (_many_fields, 413, "PAYLOAD_TOO_LARGE"),
        # python-multipart refuses a part header over 8 KiB itself, as malformed.
        (_huge_part_header, 400, "BAD_USER_INPUT"),
    ],
)
def test_multipart_text_parts_are_capped_before_log_in(
    server: LiveServer, body, status: int, code: str
) -> None:
    total = sum(len(chunk) for chunk in body())
    headers = {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Content-Length": str(total),
        "Apollo-Require-Preflight": "1",
    }
    with PeakRss(server) as memory:
        exchange = RawExchange(server)
        exchange.send(_head("POST", "/graphql", headers))
        _send_chunks(exchange, body())
        assert exchange.wait_closed(60), "the server kept the connection open"
    exchange.close()
    assert exchange.status() == status, bytes(exchange.answer[:300])
    assert _error_code(exchange) == code
    assert exchange.sent < total, "the server read the whole body"
    assert memory.growth_mb < MEMORY_BOUND_MB, f"server grew by {memory.growth_mb:.0f} MB"


def test_a_body_refused_before_it_is_read_ends_the_connection(server: LiveServer) -> None:
    """The CSRF guard answers a multipart POST without its header at once; the rest of
    the body must not be read (and thrown away) for as long as the client sends."""
    total = 50 * MB
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Content-Length": str(total)}
    exchange = RawExchange(server)
    exchange.send(_head("POST", "/graphql", headers))
    _send_chunks(exchange, _zeros(total))
    assert exchange.wait_closed(30), "the server kept the connection open"
    exchange.close()
    assert exchange.status() == 400 and _error_code(exchange) == "BAD_USER_INPUT"
    assert exchange.sent < total, "the server read the whole body"


# --- slow clients --------------------------------------------------------------------------


def _trickle(exchange: RawExchange, data: bytes, every: float, bound: float) -> float:
    """Sends one byte every `every` seconds until the server closes; seconds it took."""
    start = time.monotonic()
    for byte in data:
        if exchange.closed_at is not None or time.monotonic() - start > bound:
            break
        if not exchange.send(bytes([byte])):
            break
        time.sleep(every)
    exchange.wait_closed(max(0.0, bound - (time.monotonic() - start)))
    closed = exchange.closed_at
    exchange.close()
    assert closed is not None, f"connection still open after {bound} s"
    return closed - start


def test_slow_headers_are_cut_off(server: LiveServer) -> None:
    exchange = RawExchange(server)
    exchange.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    _trickle(exchange, b"X-Slow: " + b"a" * 1000, every=0.5, bound=CLOSE_BOUND)
    assert exchange.status() == 0  # cut off, never answered


def test_a_connection_that_says_nothing_is_cut_off(server: LiveServer) -> None:
    exchange = RawExchange(server)
    assert exchange.wait_closed(CLOSE_BOUND), f"connection still open after {CLOSE_BOUND} s"
    exchange.close()


def test_slow_headers_after_a_first_request_are_cut_off(server: LiveServer) -> None:
    """Keep-alive: uvicorn's idle timer stops at the next request's first byte."""
    exchange = RawExchange(server)
    exchange.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in exchange.answer and time.monotonic() < deadline:
        time.sleep(0.05)
    assert exchange.status() == 200
    _trickle(exchange, b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 1000, 0.5, CLOSE_BOUND)


def test_a_slow_body_is_cut_off(server: LiveServer) -> None:
    exchange = RawExchange(server)
    head = {"Content-Type": "application/json", "Content-Length": "2000"}
    exchange.send(_head("POST", "/graphql", head))
    _trickle(exchange, b'{"query": "' + b" " * 1900, every=0.5, bound=CLOSE_BOUND)


def test_a_slow_body_on_a_route_that_does_not_read_it_is_cut_off(server: LiveServer) -> None:
    exchange = RawExchange(server)
    exchange.send(_head("GET", "/healthz", {"Content-Length": "2000"}))
    _trickle(exchange, b"a" * 2000, every=0.5, bound=CLOSE_BOUND)


def test_a_steady_slow_upload_is_not_cut_off(server: LiveServer) -> None:
    """An honest client at 8 KiB/s (above the 500 B/s floor) outlives the time-out."""
    body = json.dumps({"query": "query($p: String!) { __type(name: $p) { name } }", "variables": {"p": "x" * 40_000}})
    data = body.encode()
    exchange = RawExchange(server)
    exchange.send(
        _head("POST", "/graphql", {"Content-Type": "application/json", "Content-Length": str(len(data))})
    )
    start = time.monotonic()
    for offset in range(0, len(data), 2048):
        assert exchange.send(data[offset : offset + 2048]), "cut off while sending steadily"
        time.sleep(0.25)
    assert time.monotonic() - start > TIMEOUT  # longer than the time-out, and still served
    deadline = time.monotonic() + 10
    while b"__type" not in exchange.answer and time.monotonic() < deadline:
        time.sleep(0.05)
    exchange.close()
    assert exchange.status() == 200, bytes(exchange.answer[:300])


def _attack(server: LiveServer) -> list[RawExchange]:
    """Opens a slow-header, a slow-body and a 20 MB chunked-flood connection."""
    slow_head = RawExchange(server)
    slow_head.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
    slow_body = RawExchange(server)
    slow_body.send(_head("POST", "/graphql", {"Content-Type": "application/json", "Content-Length": "5000"}))
    flood = RawExchange(server)
    flood.send(_head("POST", "/graphql", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}))
    threading.Thread(
        target=_send_chunks,
        args=(flood, (f"{MB:x}\r\n".encode() + c + b"\r\n" for c in _zeros(20 * MB))),
        daemon=True,
    ).start()
    return [slow_head, slow_body, flood]


def test_normal_requests_are_served_during_the_attacks(server: LiveServer) -> None:
    """Each normal request is sent while fresh attackers hold connections; no time bound
    is asserted, only that attackers were still connected while answers came back."""
    attackers: list[RawExchange] = []
    open_while_served = []
    with PeakRss(server) as memory, httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(10):
            attackers += _attack(server) + _attack(server)
            assert client.get("/healthz").status_code == 200
            answer = client.post("/graphql", json={"query": "{ __typename }"})
            assert answer.status_code == 200 and answer.json()["data"]["__typename"] == "Query"
            open_while_served.append(sum(a.closed_at is None for a in attackers))
    assert max(open_while_served) > 0, "no attacker was connected: this test proved nothing"
    for attacker in attackers:
        assert attacker.wait_closed(CLOSE_BOUND + 30), "an attacker's connection stayed open"
        attacker.close()
    assert memory.growth_mb < MEMORY_BOUND_MB, f"server grew by {memory.growth_mb:.0f} MB"


# --- every answer JSON with a code ---------------------------------------------------------


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [5000, 100])
def test_deeply_nested_variables_are_bad_user_input(server: LiveServer, depth: int) -> None:
    body = '{"query": "query($v: String) { __typename }", "variables": {"v": ' + _deep(depth) + "}}"
    response = httpx.post(
        server.url + "/graphql",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "nested" in error["message"]


def test_deeply_nested_multipart_operations_are_bad_user_input(server: LiveServer) -> None:
    operations = '{"query": "{ __typename }", "variables": {"v": ' + _deep(5000) + "}}"
    response = httpx.post(
        server.url + "/graphql",
        files={"operations": (None, operations), "map": (None, "{}")},
        headers={"Apollo-Require-Preflight": "1"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_a_deeply_nested_document_is_bad_user_input(server: LiveServer) -> None:
    query = "{ me " + "{ company " * 3000 + "{ id }" + " }" * 3000 + " }"
    response = httpx.post(server.url + "/graphql", json={"query": query}, timeout=30)
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_graphql_answers_are_never_cached(server: LiveServer) -> None:
    answers = [
        httpx.post(server.url + "/graphql", json={"query": "{ __typename }"}, timeout=30),
        httpx.post(server.url + "/graphql", json={"query": "{ nope }"}, timeout=30),
        httpx.get(server.url + "/graphql", headers={"accept": "text/html"}, timeout=30),
    ]
    for answer in answers:
        assert answer.headers.get("cache-control") == "no-store", answer.headers


def test_the_413_answer_is_not_cached(server: LiveServer) -> None:
    exchange = RawExchange(server)
    exchange.send(_head("POST", "/graphql", {"Content-Type": "application/json", "Content-Length": str(10 * MB)}))
    assert exchange.wait_closed(30)
    exchange.close()
    assert exchange.status() == 413 and exchange.header("cache-control") == "no-store"


async def test_a_stray_cancellation_still_answers_json_with_a_code(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CancelledError that is not a cancellation of the request (a driver's, raised
    while handling another error) used to reach uvicorn: a plain-text 500. In-process:
    a stray cancellation cannot be provoked from outside a real server."""

    async def cancelled(*args, **kwargs):
        raise asyncio.CancelledError()

    monkeypatch.setattr(auth, "authenticate", cancelled)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            "/graphql", json={"query": "{ me { id } }"}, headers={"Authorization": "Bearer x"}
        )
    assert response.status_code == 500
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL" and "requestId" in error["extensions"]
    assert response.headers.get("cache-control") == "no-store"
