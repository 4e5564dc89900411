"""The caller's IP address, trusting X-Forwarded-For only from configured proxies.

The middleware puts it in `scope["client_ip"]`, where web/access.py reads it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send


class ClientIp:
    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            peer = scope["client"][0] if scope.get("client") else None
            forwarded = Headers(scope=scope).get("x-forwarded-for")
            scope["client_ip"] = client_ip(peer, forwarded, self.trusted_proxies)
        await self.app(scope, receive, send)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Iterable[str]) -> str | None:
    """Walk X-Forwarded-For from the right, skipping trusted proxies.

    Without trusted proxies the header is ignored entirely: anybody can send it.
    """
    networks = [ipaddress.ip_network(entry, strict=False) for entry in trusted]
    if peer is None or not _is_trusted(peer, networks) or not forwarded_for:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _valid(hop):
            return peer
        if not _is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, networks: list) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
