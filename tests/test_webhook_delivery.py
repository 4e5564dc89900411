"""runtime/webhook_delivery.py against real HTTP receivers on loopback sockets.

Tests that must reach a loopback receiver use allow_private=True; separate tests prove
that loopback and other internal addresses are refused (without a connection) when it is
False. A fake resolver stands in for DNS only; connections are always real.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook as ReferenceVerifier

from domain import webhooks
from domain.errors import BadUserInput
from runtime.webhook_delivery import (
    MAX_RESPONSE_BYTES,
    Timeouts,
    UnsafeDestination,
    WebhookSender,
    deliver_once,
    is_forbidden,
)
from tests.http_receiver import Received, Receiver, answer, response, self_signed

BODY = webhooks.encode_body({"type": "order.assigned", "timestamp": "t", "data": {}})
SHORT = Timeouts(connect=1.0, read=30.0, total=1.5)  # only the total bound can stop a drip


def verifying(secret: str):
    """A receiver that answers 204 only for a valid signature (checked two ways)."""

    async def respond(request: Received, writer: asyncio.StreamWriter) -> None:
        try:
            webhooks.verify(secret, request.headers, request.body, now=int(time.time()))
            ReferenceVerifier(secret).verify(request.body, request.headers)
        except Exception:
            writer.write(response(401))
        else:
            writer.write(response(204))
        await writer.drain()

    return respond


async def test_signed_post_verifies_at_the_receiver_and_keeps_its_id_on_retries() -> None:
    secret = webhooks.new_secret()
    message_id = webhooks.new_message_id()
    sender = WebhookSender(allow_private=True)
    async with Receiver(verifying(secret)) as receiver:
        first = await sender.send_signed(receiver.url(), secret, message_id, BODY)
        second = await sender.send_signed(receiver.url(), secret, message_id, BODY)
        forged = await sender.send_signed(receiver.url(), webhooks.new_secret(), message_id, BODY)
    assert (first.status_code, first.error, first.address) == (204, None, "127.0.0.1")
    assert second.status_code == 204 and forged.status_code == 401
    assert webhooks.decide(first.status_code, 1).outcome is webhooks.Outcome.DELIVERED
    ids = [request.headers["webhook-id"] for request in receiver.received]
    assert ids == [message_id] * 3
    request = receiver.received[0]
    assert request.method == "POST" and request.target == "/hook" and request.body == BODY
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"


async def test_a_receiver_that_never_answers_cannot_hold_the_worker() -> None:
    async def silent(_: Received, __: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    sender = WebhookSender(allow_private=True, timeouts=SHORT)
    async with Receiver(silent) as receiver:
        started = time.monotonic()
        attempt = await sender.post(receiver.url(), BODY, {})
        elapsed = time.monotonic() - started
    assert attempt.status_code is None and attempt.error == "timeout"
    assert receiver.connections == 1 and elapsed < 3.0
    assert webhooks.decide(None, 1).outcome is webhooks.Outcome.FAILED


async def test_a_receiver_that_drips_bytes_forever_is_cut_off_by_the_total_bound() -> None:
    async def drip(_: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        for _ in range(3000):  # bounded: 10 minutes at most
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.2)

    async def slow_headers(_: Received, writer: asyncio.StreamWriter) -> None:
        for _ in range(3000):
            writer.write(b"X-Slow: 1\r\n" if _ else b"HTTP/1.1 200 OK\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)

    sender = WebhookSender(allow_private=True, timeouts=SHORT)
    for behaviour in (drip, slow_headers):
        async with Receiver(behaviour) as receiver:
            started = time.monotonic()
            attempt = await sender.post(receiver.url(), BODY, {})
            elapsed = time.monotonic() - started
        assert attempt.error == "timeout", behaviour.__name__
        assert elapsed < 3.0, behaviour.__name__


async def test_a_redirect_to_an_internal_address_is_not_followed() -> None:
    async with Receiver(answer(200)) as internal:
        target = internal.url("/admin/delete-everything")
        async with Receiver(answer(302, headers={"Location": target})) as redirecting:
            sender = WebhookSender(allow_private=True)
            attempt = await sender.post(redirecting.url(), BODY, {})
            for code in (301, 303, 307, 308):
                redirecting.respond = answer(code, headers={"Location": target})
                assert (await sender.post(redirecting.url(), BODY, {})).status_code == code
    assert attempt.status_code == 302 and internal.connections == 0
    decision = webhooks.decide(attempt.status_code, attempts_made=1)
    assert decision.outcome is webhooks.Outcome.FAILED and decision.retry_in_s is not None


async def test_410_disables_the_endpoint_and_5xx_retries() -> None:
    sender = WebhookSender(allow_private=True)
    async with Receiver(answer(410)) as gone, Receiver(answer(503)) as failing:
        gone_attempt = await sender.post(gone.url(), BODY, {})
        failing_attempt = await sender.post(failing.url(), BODY, {})
    decision = webhooks.decide(gone_attempt.status_code, attempts_made=1)
    assert decision.outcome is webhooks.Outcome.GONE and decision.disable_endpoint
    retry = webhooks.decide(failing_attempt.status_code, attempts_made=2)
    assert retry.outcome is webhooks.Outcome.FAILED and retry.retry_in_s == 120


async def test_a_huge_or_compressed_answer_is_read_only_up_to_the_cap() -> None:
    huge = b"A" * (5 * 1024 * 1024)
    sender = WebhookSender(allow_private=True)
    async with Receiver(answer(200, huge, {"Content-Encoding": "gzip"})) as receiver:
        attempt = await sender.post(receiver.url(), BODY, {})
    assert attempt.status_code == 200
    assert attempt.response_excerpt == b"A" * MAX_RESPONSE_BYTES  # raw: never decompressed


async def test_a_closed_port_is_a_connect_error_to_retry() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    attempt = await WebhookSender(allow_private=True).post(f"http://127.0.0.1:{port}/", BODY, {})
    assert attempt.status_code is None and attempt.error == "connect_error"


async def test_loopback_is_refused_without_a_connection_when_private_networks_are_off() -> None:
    sender = WebhookSender()  # the production default
    async with Receiver(answer(204)) as receiver:
        for url in (receiver.url(), receiver.url(host="localhost"), receiver.url(host="[::1]")):
            attempt = await sender.post(url, BODY, {})
            assert attempt.status_code is None and attempt.error == "refused_destination", url
            with pytest.raises(UnsafeDestination) as caught:
                await sender.check_destination(url)
            assert isinstance(caught.value, BadUserInput)
            assert caught.value.extensions == {"field": "url"}
    assert receiver.connections == 0


class FakeDns:
    """Stands in for DNS: answers from a table, counts the questions."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.questions: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.questions.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


async def test_the_address_is_checked_again_at_delivery_time() -> None:
    dns = FakeDns({"hooks.partner.example": ["8.8.8.8"]})
    sender = WebhookSender(resolver=dns)
    assert await sender.check_destination("https://hooks.partner.example/h") == [
        ipaddress.ip_address("8.8.8.8")
    ]
    for internal in (["169.254.169.254"], ["8.8.8.8", "10.0.0.5"], ["::ffff:127.0.0.1"]):
        dns.table["hooks.partner.example"] = internal  # the DNS answer changed since then
        attempt = await sender.post("https://hooks.partner.example/h", BODY, {})
        assert attempt.error == "refused_destination" and attempt.address is None, internal
    assert (await sender.post("https://nowhere.example/", BODY, {})).error == (
        "refused_destination"
    )


async def test_connects_to_the_checked_address_with_the_right_host_and_sni(
    tmp_path: Path,
) -> None:
    server_tls, client_tls = self_signed(tmp_path, "hooks.test")
    secret = webhooks.new_secret()
    dns = FakeDns({"hooks.test": ["127.0.0.1"]})
    sender = WebhookSender(allow_private=True, resolver=dns, verify=client_tls)
    async with Receiver(verifying(secret), tls=server_tls) as receiver:
        url = receiver.url(host="hooks.test")
        attempt = await sender.send_signed(url, secret, webhooks.new_message_id(), BODY)
        # The certificate is checked against the URL's name, not the address.
        other_name = FakeDns({"other.test": ["127.0.0.1"]})
        wrong = await WebhookSender(True, resolver=other_name, verify=client_tls).post(
            receiver.url(host="other.test"), BODY, {}
        )
    assert attempt.status_code == 204 and attempt.address == "127.0.0.1"
    assert dns.questions == ["hooks.test"]  # one answer, used for the check and the connection
    assert receiver.server_names[0] == "hooks.test"
    assert receiver.received[0].headers["host"] == f"hooks.test:{receiver.port}"
    assert wrong.status_code is None and wrong.error == "connect_error"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 (an address under test, not a bind)
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "2001:db8::1",
    ],
)
def test_internal_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_forbidden(ipaddress.ip_address(address))


async def test_bad_url_syntax_is_refused_before_any_lookup() -> None:
    dns = FakeDns({})
    sender = WebhookSender(allow_private=True, resolver=dns)
    for url in ("ftp://x.example/", "https://u:p@x.example/", "gopher://127.0.0.1/"):
        assert (await sender.post(url, BODY, {})).error == "refused_destination"
        with pytest.raises(BadUserInput):
            await sender.check_destination(url)
    assert dns.questions == []


async def test_deliver_once_pairs_the_try_with_what_happens_next() -> None:
    secret, message_id = webhooks.new_secret(), webhooks.new_message_id()
    sender = WebhookSender(allow_private=True)
    busy_answer = answer(503, headers={"Retry-After": "900"})
    async with (
        Receiver(verifying(secret)) as good,
        Receiver(answer(500)) as bad,
        Receiver(busy_answer) as busy,
    ):
        postponed = await deliver_once(sender, busy.url(), secret, message_id, BODY, 1)
        delivered = await deliver_once(sender, good.url(), secret, message_id, BODY, 4)
        failed = await deliver_once(sender, bad.url(), secret, message_id, BODY, 1)
        last = await deliver_once(sender, bad.url(), secret, message_id, BODY, 10)
    assert delivered.attempt.status_code == 204
    assert delivered.decision.outcome is webhooks.Outcome.DELIVERED
    assert failed.decision.outcome is webhooks.Outcome.FAILED
    assert failed.decision.retry_in_s is not None and 30 <= failed.decision.retry_in_s <= 33
    assert last.decision.retry_in_s is None  # the schedule is exhausted
    assert postponed.attempt.retry_after_s == 900 and postponed.decision.retry_in_s == 900


async def test_proxy_variables_of_the_environment_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy would connect somewhere else than the address that was checked.
    async with Receiver(answer(204)) as target, Receiver(answer(200)) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url(path=""))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        attempt = await WebhookSender(allow_private=True).post(target.url(), BODY, {})
    assert attempt.status_code == 204
    assert proxy.connections == 0 and target.connections == 1


async def test_a_dns_lookup_that_hangs_is_bounded() -> None:
    async def hanging(host: str, port: int) -> list[str]:
        await asyncio.sleep(3600)
        return []

    sender = WebhookSender(resolver=hanging, timeouts=Timeouts(connect=0.3, read=1, total=5))
    started = time.monotonic()
    with pytest.raises(UnsafeDestination):
        await sender.check_destination("https://slow-dns.example/")
    assert time.monotonic() - started < 2


async def test_numeric_spellings_of_loopback_are_refused_too() -> None:
    sender = WebhookSender()  # the system resolver reads these the way inet_aton does
    async with Receiver(answer(204)) as receiver:
        port = receiver.port
        for host in ("2130706433", "0x7f000001", "0x7f.1", "127.1", "0", "017700000001"):
            url = f"http://{host}:{port}/hook"
            attempt = await sender.post(url, BODY, {})
            assert attempt.error == "refused_destination", host
    assert receiver.connections == 0
