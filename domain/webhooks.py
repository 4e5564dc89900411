"""Webhook rules: event names, thin payloads, Standard Webhooks signing, retries, URLs.

Pure rules only (no I/O): the delivery over the network is `runtime/webhook_delivery.py`.
The signature scheme is https://www.standardwebhooks.com (symmetric, `v1`): the key is
the base64-decoded part of the `whsec_` secret, the signed content `id.timestamp.body`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook as _StandardWebhook

from domain.errors import BadUserInput

# --- events -------------------------------------------------------------------------------

# Each event with the only keys its `data` may carry. Keys ending in "Id" hold UUIDs, the
# others an enum value (UPPER_CASE): nothing else fits, so an address, a billing detail or
# file content cannot reach a receiver even by mistake (the payload is "thin").
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "order.requested": ("orderId", "modelId", "companyId", "status"),
    "order.assigned": ("orderId", "providerId", "status"),
    "order.status_changed": ("orderId", "status", "previousStatus"),
    "model.analysis_done": ("modelId", "analysisStatus"),
    "model.analysis_failed": ("modelId", "analysisStatus"),
    # After model.analysis_done whose printability had pendingChecks: the verdict is complete.
    "model.checks_done": ("modelId", "analysisStatus"),
    "comment.added": ("commentId", "modelId"),
}
EVENTS: frozenset[str] = frozenset(EVENT_FIELDS)

MAX_URL_LENGTH = 2048
MAX_WEBHOOKS_PER_COMPANY = 20
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes
SIGNATURE_TOLERANCE_S = 300  # receivers refuse timestamps further off than this

_ENUM_VALUE = re.compile(r"[A-Z][A-Z_]{0,31}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*\.?")


class WebhookSignatureError(Exception):
    """A webhook whose headers or signature do not verify."""


def validate_events(names: Iterable[str]) -> tuple[str, ...]:
    """The subscribed events, deduplicated in a stable order; unknown names are refused."""
    chosen = list(dict.fromkeys(names))
    if not chosen:
        raise BadUserInput("Choose at least one event.", field="events")
    unknown = sorted(name for name in chosen if name not in EVENTS)
    if unknown:
        raise BadUserInput(
            f"Unknown event: {', '.join(unknown[:5])[:200]}.",
            field="events",
            allowed=sorted(EVENTS),
        )
    return tuple(sorted(chosen))


def check_quota(existing: int) -> None:
    """Bounded per company: 10,000 endpoints would be 10,000 POSTs per event."""
    if existing >= MAX_WEBHOOKS_PER_COMPANY:
        raise BadUserInput(
            f"A company may register at most {MAX_WEBHOOKS_PER_COMPANY} webhooks.",
            field="url",
        )


def build_payload(event: str, occurred_at: datetime, **data: object) -> dict:
    """`{"type", "timestamp", "data"}` with exactly the event's fields, ids and statuses only."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    allowed = EVENT_FIELDS[event]
    extra = sorted(set(data) - set(allowed))
    missing = sorted(set(allowed) - set(data))
    if extra or missing:
        raise ValueError(f"{event}: unexpected {extra}, missing {missing}")
    return {
        "type": event,
        "timestamp": _iso(occurred_at),
        "data": {key: _thin_value(key, data[key]) for key in allowed},
    }


def encode_body(payload: Mapping[str, object]) -> bytes:
    """Compact JSON: the exact bytes that are signed are the bytes that are sent."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def _thin_value(key: str, value: object) -> str | None:
    if value is None and key == "previousStatus":
        return None
    if key.endswith("Id"):
        return str(uuid.UUID(str(value)))  # raises for anything that is not a UUID
    text = str(getattr(value, "value", value))
    if not _ENUM_VALUE.fullmatch(text):
        raise ValueError(f"{key} must be an enum value")
    return text


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- secrets and signatures ---------------------------------------------------------------


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_message_id() -> str:
    """The `webhook-id`: one per event and endpoint, the same on every retry (no dots)."""
    return "msg_" + secrets.token_hex(16)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`, computed by the spec's library."""
    _check_message_id(message_id)
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return _signer(secret).sign(msg_id=message_id, timestamp=moment, data=body.decode())


def signature_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    tolerance: int = SIGNATURE_TOLERANCE_S,
) -> None:
    """What a receiver does; raises WebhookSignatureError on any mismatch.

    The library's own verify() reads the clock and lets malformed headers escape as
    ValueError; this one takes `now` (testable) and turns every defect into one error.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    message_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    offered = lowered.get("webhook-signature", "")
    if not (message_id and stamp.isascii() and stamp.isdigit() and offered):
        raise WebhookSignatureError("missing or malformed webhook headers")
    if abs(now - int(stamp)) > tolerance:
        raise WebhookSignatureError("timestamp outside the tolerance")
    try:
        expected = sign(secret, message_id, int(stamp), body).split(",", 1)[1].encode()
    except (ValueError, UnicodeDecodeError) as error:
        raise WebhookSignatureError("unverifiable message") from error
    for candidate in offered.split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return
    raise WebhookSignatureError("no matching signature")


def _signer(secret: str) -> _StandardWebhook:
    if not secret.startswith("whsec_"):
        raise ValueError("webhook secrets start with whsec_")
    try:
        base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as error:
        raise ValueError("webhook secret is not base64") from error
    return _StandardWebhook(secret)


def _check_message_id(message_id: str) -> None:
    # The spec: ids must not be user controlled and never contain "." (it delimits).
    if not message_id or "." in message_id or len(message_id) > 128:
        raise ValueError("invalid webhook message id")


# --- retries and outcomes -----------------------------------------------------------------

# Delay before retry n (after try n failed). The first within a minute, then growing;
# together 27.7 h, so a receiver that is down for a day still gets the event.
RETRY_DELAYS_S: tuple[int, ...] = (30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200)
MAX_ATTEMPTS = 1 + len(RETRY_DELAYS_S)
RETRY_JITTER = 0.1  # up to +10 %, so failing receivers are not hit in lockstep
MAX_RETRY_AFTER_S = 43200  # a receiver may ask for at most the longest step of the schedule


def retry_delay(attempts_made: int, jitter: float = 0.0) -> float | None:
    """Seconds to wait before the next try, or None when the schedule is exhausted.

    `jitter` in [0, 1) is scaled to at most RETRY_JITTER of the delay.
    """
    if attempts_made < 1 or attempts_made > len(RETRY_DELAYS_S):
        return None
    base = RETRY_DELAYS_S[attempts_made - 1]
    return base * (1 + RETRY_JITTER * min(max(jitter, 0.0), 1.0))


class Outcome(StrEnum):
    """What one try means; also `WebhookDelivery.status`."""

    DELIVERED = "DELIVERED"  # 2xx
    FAILED = "FAILED"  # anything else: retried while the schedule lasts
    GONE = "GONE"  # 410: the receiver asks us to stop; the endpoint is disabled


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    retry_in_s: float | None  # None: no further try
    disable_endpoint: bool


def decide(
    status_code: int | None,
    attempts_made: int,
    jitter: float = 0.0,
    retry_after_s: int | None = None,
) -> Decision:
    """From one try's HTTP status (None: no response at all) to what happens next.

    3xx counts as a failure and is never followed (the spec's advice, and a redirect to an
    internal address would bypass the SSRF guard). A receiver's Retry-After may postpone
    the next try (up to MAX_RETRY_AFTER_S), never bring it forward.
    """
    if status_code is not None and 200 <= status_code < 300:
        return Decision(Outcome.DELIVERED, None, False)
    if status_code == 410:
        return Decision(Outcome.GONE, None, True)
    delay = retry_delay(attempts_made, jitter)
    if delay is not None and retry_after_s is not None:
        delay = max(delay, float(min(max(retry_after_s, 0), MAX_RETRY_AFTER_S)))
    return Decision(Outcome.FAILED, delay, False)


def parse_retry_after(value: str | None) -> int | None:
    """Retry-After in delta-seconds (the HTTP-date form is ignored)."""
    if value is None or not value.strip().isascii() or not value.strip().isdigit():
        return None
    return min(int(value.strip()), MAX_RETRY_AFTER_S)


# --- endpoint URLs ------------------------------------------------------------------------


def validate_url(url: str) -> str:
    """Syntax rules for an endpoint URL; where it resolves to is checked at delivery time."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise _bad_url(f"The URL must be 1 to {MAX_URL_LENGTH} characters.")
    if any(char.isspace() or ord(char) < 32 or char == "\\" for char in url):
        raise _bad_url("The URL contains spaces, control characters or backslashes.")
    if not url.isascii():
        raise _bad_url("Write the URL in ASCII (punycode for international names).")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _bad_url("The URL is malformed.") from None
    if parts.scheme not in ("http", "https"):
        raise _bad_url("Only http and https URLs are allowed.")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise _bad_url("Credentials in the URL are not allowed; verify the signature instead.")
    if parts.fragment:
        raise _bad_url("A webhook URL has no fragment.")
    host = parts.hostname or ""
    if not host or not (_HOST.fullmatch(host) or _is_ip_literal(host)):
        raise _bad_url("The URL has no valid host.")
    if port == 0:
        raise _bad_url("The URL has an invalid port.")
    return url


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _bad_url(message: str) -> BadUserInput:
    return BadUserInput(message, field="url")
