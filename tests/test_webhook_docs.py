"""The receiver in docs/webhooks.md, run as written, against real signed deliveries."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain import webhooks
from runtime.webhook_delivery import WebhookSender

DOCS = Path(__file__).resolve().parent.parent / "docs"
# Each guide with a receiver that verifies: the standard library one, and the one for
# print services built on the `standardwebhooks` library.
GUIDES = ("webhooks.md", "provider-integration.md")


def _receiver_source(guide: str) -> str:
    section = (DOCS / guide).read_text().split("### A receiver that verifies", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError("the documented receiver did not start")


@pytest.mark.parametrize("guide", GUIDES)
async def test_the_documented_receiver_verifies_and_deduplicates(
    tmp_path: Path, guide: str
) -> None:
    script = tmp_path / "receiver.py"
    script.write_text(_receiver_source(guide))
    secret, port = webhooks.new_secret(), _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env={**os.environ, "WEBHOOK_SECRET": secret, "HOST": "127.0.0.1", "PORT": str(port)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _wait_listening(port)
        url = f"http://127.0.0.1:{port}/hooks"
        sender = WebhookSender(allow_private=True)
        payload = webhooks.build_payload(
            "order.status_changed",
            datetime.now(UTC),
            orderId="0b8e3f5e-8c1d-4f0a-9a57-2f1e3c4d5e6f",
            status="IN_PRODUCTION",
            previousStatus="ACCEPTED",
        )
        body = webhooks.encode_body(payload)
        message_id = webhooks.new_message_id()
        first = await sender.send_signed(url, secret, message_id, body)
        retry = await sender.send_signed(url, secret, message_id, body)
        forged = await sender.send_signed(url, webhooks.new_secret(), message_id, body)
        stale = await sender.send_signed(url, secret, "msg_old", body, now=1614265330)
        assert (first.status_code, retry.status_code) == (204, 204)
        assert (forged.status_code, stale.status_code) == (401, 401)
    finally:
        process.terminate()
        output, _ = await asyncio.wait_for(process.communicate(), 10)
    lines = output.decode().splitlines()
    assert lines == [
        'order.status_changed {"orderId": "0b8e3f5e-8c1d-4f0a-9a57-2f1e3c4d5e6f",'
        ' "previousStatus": "ACCEPTED", "status": "IN_PRODUCTION"}'
    ]
