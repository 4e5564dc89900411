"""One webhook try over the network: the SSRF guard, then a signed, bounded POST.

The guard resolves the endpoint's host and refuses it when any address is not a public
unicast address (loopback, private, link-local incl. cloud metadata, CGNAT, multicast,
reserved, unspecified; IPv4 embedded in IPv6 is unwrapped first), unless private networks
are allowed (WEBHOOK_ALLOW_PRIVATE_NETWORKS, for development and tests). It runs before
every try (DNS can change between registration and delivery), and the connection then goes
to the very address that was checked, with the URL's name in `Host` and TLS SNI and
certificate verification: a second DNS answer (rebinding) never comes into play.

Redirects are never followed, proxies from the environment are ignored, every phase has a
timeout and the whole try a total one, and at most MAX_RESPONSE_BYTES of the answer is read
(raw, never decompressed): a slow or hostile receiver cannot hold a worker or its memory.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from domain import webhooks
from domain.errors import BadUserInput

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_RESPONSE_BYTES = 1024
USER_AGENT = "PrintVault-Webhooks/1"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeDestination(BadUserInput):
    """The endpoint resolves to an address webhooks may not reach (or does not resolve)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"Webhook URL refused: {message}.", field="url")


@dataclass(frozen=True)
class Timeouts:
    connect: float = 3.0
    read: float = 5.0
    total: float = 10.0  # DNS + connect + TLS + request + answer, all together


@dataclass(frozen=True)
class Attempt:
    """What one try produced. `error` is a fixed word, safe to store and show the owner."""

    status_code: int | None
    error: str | None  # None | refused_destination | timeout | connect_error | protocol_error
    elapsed_s: float
    address: str | None = None  # the IP that was connected to
    response_excerpt: bytes = b""
    retry_after_s: int | None = None  # the receiver's Retry-After, in seconds


def is_forbidden(address: IpAddress) -> bool:
    """True for every address a webhook must not reach without allow_private."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and is_forbidden(embedded):
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class WebhookSender:
    """Sends one signed try; configuration comes in through the constructor."""

    def __init__(
        self,
        allow_private: bool = False,
        timeouts: Timeouts | None = None,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.allow_private = allow_private
        self.timeouts = timeouts or Timeouts()
        self._resolve = resolver or system_resolver
        # Built once: loading the CA bundle costs ~60 ms, more than a whole try on a LAN.
        self._verify = httpx.create_ssl_context() if verify is True else verify

    async def check_destination(self, url: str) -> list[IpAddress]:
        """The URL's addresses, all of them allowed; raises UnsafeDestination otherwise.

        Also meant for `createWebhook`, so an obviously internal URL is refused at once.
        """
        webhooks.validate_url(url)
        parsed = httpx.URL(url)
        host = parsed.host
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = await self._lookup(host, parsed.port or _default_port(parsed.scheme))
        if not addresses:
            raise UnsafeDestination("the host does not resolve")
        if not self.allow_private and any(is_forbidden(address) for address in addresses):
            # Any forbidden answer refuses the whole name: picking the "good" one would
            # leave a name that mixes internal and external addresses usable.
            raise UnsafeDestination("the host resolves to a non-public address")
        return addresses

    async def send_signed(
        self, url: str, secret: str, message_id: str, body: bytes, now: int | None = None
    ) -> Attempt:
        """One try: a fresh timestamp and signature, the same `webhook-id` as every try."""
        timestamp = int(time.time()) if now is None else now
        headers = webhooks.signature_headers(secret, message_id, timestamp, body)
        return await self.post(url, body, headers)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        started = time.monotonic()
        address: str | None = None
        try:
            async with asyncio.timeout(self.timeouts.total):
                addresses = await self.check_destination(url)
                address = str(addresses[0])
                status, excerpt, retry_after = await self._post_to(
                    url, addresses[0], body, headers
                )
        except BadUserInput:  # UnsafeDestination, or a URL that no longer passes the rules
            return Attempt(None, "refused_destination", time.monotonic() - started)
        except (TimeoutError, httpx.TimeoutException):
            return Attempt(None, "timeout", time.monotonic() - started, address)
        except httpx.ConnectError:
            return Attempt(None, "connect_error", time.monotonic() - started, address)
        except (httpx.TransportError, httpx.DecodingError):
            return Attempt(None, "protocol_error", time.monotonic() - started, address)
        elapsed = time.monotonic() - started
        return Attempt(status, None, elapsed, address, excerpt, retry_after)

    async def _lookup(self, host: str, port: int) -> list[IpAddress]:
        try:
            async with asyncio.timeout(self.timeouts.connect):  # createWebhook waits on this
                answers = await self._resolve(host, port)
        except (OSError, UnicodeError, TimeoutError) as error:
            raise UnsafeDestination("the host does not resolve") from error
        return [ipaddress.ip_address(answer.split("%", 1)[0]) for answer in answers]

    async def _post_to(
        self, url: str, address: IpAddress, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, int | None]:
        original = httpx.URL(url)
        pinned = original.copy_with(host=str(address))
        request_headers = {
            **headers,
            "Host": _host_header(original),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
        }
        extensions = {"sni_hostname": original.host} if original.scheme == "https" else {}
        timeout = httpx.Timeout(
            connect=self.timeouts.connect,
            read=self.timeouts.read,
            write=self.timeouts.read,
            pool=self.timeouts.connect,
        )
        async with httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,  # HTTP(S)_PROXY would connect elsewhere than the checked address
            verify=self._verify,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            request = client.build_request(
                "POST", pinned, content=body, headers=request_headers, extensions=extensions
            )
            response = await client.send(request, stream=True)
            try:
                excerpt = await _read_capped(response)
            finally:
                await response.aclose()
        retry_after = webhooks.parse_retry_after(response.headers.get("retry-after"))
        return response.status_code, excerpt, retry_after


async def _read_capped(response: httpx.Response) -> bytes:
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept += chunk[: MAX_RESPONSE_BYTES - len(kept)]
        if len(kept) >= MAX_RESPONSE_BYTES:
            break
    return bytes(kept)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _host_header(url: httpx.URL) -> str:
    host = url.host if ":" not in url.host else f"[{url.host}]"
    return host if url.port is None else f"{host}:{url.port}"


@dataclass(frozen=True)
class Tried:
    attempt: Attempt
    decision: webhooks.Decision


async def deliver_once(
    sender: WebhookSender,
    url: str,
    secret: str,
    message_id: str,
    body: bytes,
    attempt_number: int,
) -> Tried:
    """What the delivery job runs for try `attempt_number` (1-based) of one event.

    The caller records `attempt` as a WebhookDelivery (status = decision.outcome), then
    schedules the next try after `decision.retry_in_s` seconds (None: no more tries) and
    disables the endpoint when `decision.disable_endpoint`.
    """
    attempt = await sender.send_signed(url, secret, message_id, body)
    decision = webhooks.decide(
        attempt.status_code,
        attempt_number,
        jitter=random.random(),
        retry_after_s=attempt.retry_after_s,
    )
    return Tried(attempt, decision)
