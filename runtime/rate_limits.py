"""Rate limits per account and per IP, shared by every server process.

Counters live in Redis when REDIS_URL is set (several processes, several
machines), else in this process's memory (the embedded default runs one
process). Windows slide: an account under attack is slowed down, then
recovers by itself; nobody is locked out for good.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from domain.errors import RateLimited
from runtime import metrics

log = logging.getLogger("printvault.rate_limits")

# Log-in (issue 10, OWASP ASVS 2.2.1): failures are counted per (account, IP) and, more
# slowly, per account. An attacker's address runs out of tries for an account long before
# the account's own budget does, so the owner, from another address, still gets in; the
# per-account budget bounds a distributed guesser to 100 tries an hour. Addresses the
# account logged in from before (`known_ip_days`) are not held back by the account budget.
DEFAULT_LIMITS: dict[str, str] = {
    "login_ip": "30/minute",
    "login_account_ip": "10/15 minutes",
    "login_account": "100/hour",
    "reauth_account": "10/15 minutes",
    "password_reset_account": "5/hour",
    "password_reset_ip": "30/hour",
    "signup_email": "3/hour",
    "otp_account": "10/minute",
    "signup_ip": "20/hour",
    "invite_user": "100/hour",
    "accept_invitation_ip": "30/hour",
    "upload_user": "200/hour",
    "upload_ip": "400/hour",
    # Orders create invoices-to-be and notify providers; a stolen token or a broken
    # partner script must not flood either.
    "order_request_user": "120/hour",
    "order_step_user": "1200/hour",
}


def parse_overrides(raw: str) -> dict[str, str]:
    """`RATE_LIMITS=login_ip=100/minute,signup_ip=5/hour` overrides single rules."""
    overrides: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        name, _, value = entry.partition("=")
        if name not in DEFAULT_LIMITS:
            raise ValueError(f"unknown rate limit {name!r}")
        parse(value)  # raises on a malformed limit
        overrides[name] = value
    return overrides


class RateLimiter:
    def __init__(
        self, redis_url: str = "", prefix: str = "printvault", overrides: str = ""
    ) -> None:
        self.storage: Storage = (
            RedisStorage(_async_uri(redis_url), implementation="redispy", key_prefix=prefix)
            if redis_url
            else MemoryStorage()
        )
        self.strategy = MovingWindowRateLimiter(self.storage)
        rules = {**DEFAULT_LIMITS, **parse_overrides(overrides)}
        self.rules: dict[str, RateLimitItem] = {name: parse(text) for name, text in rules.items()}

    async def exhausted(self, rule: str, key: object) -> bool:
        """Whether the next hit would be refused; counts nothing."""
        if key is None:
            return False
        return not await self.strategy.test(self.rules[rule], rule, str(key).casefold())

    async def count(self, rule: str, key: object) -> None:
        """Count one attempt (a failure, say) without refusing this one."""
        if key is not None:
            await self.strategy.hit(self.rules[rule], rule, str(key).casefold())

    async def refuse_if_exhausted(self, rule: str, key: object) -> None:
        if await self.exhausted(rule, key):
            await self._refuse(rule, str(key).casefold())

    async def hit(self, rule: str, key: object) -> None:
        """Count one attempt; raise RATE_LIMITED (with retryAfter seconds) past the limit."""
        if key is None:
            return
        item = self.rules[rule]
        identifier = str(key).casefold()
        if await self.strategy.hit(item, rule, identifier):
            return
        await self._refuse(rule, identifier)

    async def _refuse(self, rule: str, identifier: str) -> None:
        item = self.rules[rule]
        stats = await self.strategy.get_window_stats(item, rule, identifier)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        log.info("rate limit %s reached", rule)
        metrics.RATE_LIMITED.labels(rule).inc()
        raise RateLimited(
            f"Too many attempts; try again in {retry_after} seconds.", retryAfter=retry_after
        )


def _async_uri(redis_url: str) -> str:
    return redis_url if redis_url.startswith("async+") else "async+" + redis_url
