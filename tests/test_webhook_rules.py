"""domain/webhooks.py: event names, thin payloads, Standard Webhooks signatures, retries, URLs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain import webhooks
from domain.errors import BadUserInput

# The published test vector of the Standard Webhooks reference libraries
# (standard-webhooks/standard-webhooks, libraries/*/tests: "test_sign_function").
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_signature_matches_the_published_test_vector() -> None:
    assert webhooks.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_signature_is_hmac_sha256_of_id_timestamp_body_with_the_decoded_key() -> None:
    secret = webhooks.new_secret()
    body = b'{"type":"order.requested"}'
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    assert webhooks.sign(secret, "msg_1", 1700000000, body) == expected


def test_new_secrets_are_whsec_base64_of_32_random_bytes() -> None:
    first, second = webhooks.new_secret(), webhooks.new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32


def test_verify_accepts_the_vector_and_rejects_every_alteration() -> None:
    headers = {
        "Webhook-Id": SPEC_ID,
        "Webhook-Timestamp": str(SPEC_TIMESTAMP),
        "Webhook-Signature": "v1a,ignored " + SPEC_SIGNATURE,
    }
    webhooks.verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 10)
    altered = [
        ({**headers, "Webhook-Id": "msg_other"}, SPEC_BODY, SPEC_TIMESTAMP),
        ({**headers, "Webhook-Timestamp": str(SPEC_TIMESTAMP + 1)}, SPEC_BODY, SPEC_TIMESTAMP),
        (headers, SPEC_BODY + b" ", SPEC_TIMESTAMP),
        (headers, SPEC_BODY, SPEC_TIMESTAMP + 301),  # replayed too late
        ({**headers, "Webhook-Signature": "v1"}, SPEC_BODY, SPEC_TIMESTAMP),
        ({**headers, "Webhook-Signature": "v1,%%%"}, SPEC_BODY, SPEC_TIMESTAMP),
        ({**headers, "Webhook-Timestamp": "soon"}, SPEC_BODY, SPEC_TIMESTAMP),
        ({"webhook-id": SPEC_ID}, SPEC_BODY, SPEC_TIMESTAMP),
    ]
    for bad_headers, body, now in altered:
        with pytest.raises(webhooks.WebhookSignatureError):
            webhooks.verify(SPEC_SECRET, bad_headers, body, now=now)
    with pytest.raises(webhooks.WebhookSignatureError):
        webhooks.verify(webhooks.new_secret(), headers, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_message_ids_never_contain_the_delimiter() -> None:
    ids = {webhooks.new_message_id() for _ in range(100)}
    assert len(ids) == 100 and not any("." in value for value in ids)
    with pytest.raises(ValueError):
        webhooks.sign(SPEC_SECRET, "msg.1", SPEC_TIMESTAMP, SPEC_BODY)


def test_event_names_are_the_contract() -> None:
    contract = {
        "order.requested",
        "order.assigned",
        "order.status_changed",
        "model.analysis_done",
        "model.analysis_failed",
        "comment.added",
    }
    # Extended, never renamed: the verdict completed after DONE (docs/analysis.md).
    assert contract | {"model.checks_done"} == webhooks.EVENTS


def test_unknown_empty_and_duplicate_event_lists() -> None:
    assert webhooks.validate_events(["order.assigned", "order.requested", "order.assigned"]) == (
        "order.assigned",
        "order.requested",
    )
    for bad in ([], ["order.exploded"], ["order.requested", "ORDER.REQUESTED"]):
        with pytest.raises(BadUserInput) as caught:
            webhooks.validate_events(bad)
        assert caught.value.extensions["field"] == "events"


def test_payload_is_thin_and_compact() -> None:
    order, model, company = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    payload = webhooks.build_payload(
        "order.requested",
        AT.astimezone(timezone(timedelta(hours=2))),
        orderId=order,
        modelId=str(model),
        companyId=company,
        status="REQUESTED",
    )
    assert payload == {
        "type": "order.requested",
        "timestamp": "2026-11-30T12:00:00Z",
        "data": {
            "orderId": str(order),
            "modelId": str(model),
            "companyId": str(company),
            "status": "REQUESTED",
        },
    }
    body = webhooks.encode_body(payload)
    assert b" " not in body and json.loads(body) == payload


def test_no_address_billing_or_file_content_can_enter_a_payload() -> None:
    order = uuid.uuid4()
    leaks = [
        # an extra key (an address, billing data, file bytes) is refused outright
        {"orderId": order, "status": "SHIPPED", "previousStatus": None, "shippingAddress": "x"},
        {"orderId": order, "status": "SHIPPED", "previousStatus": None, "iban": "DE89370400"},
        {"orderId": order, "status": "SHIPPED", "previousStatus": None, "file": b"solid x"},
        # a permitted key with personal data or content in it is refused too
        {"orderId": "Jane Doe, 1 Main St", "status": "SHIPPED", "previousStatus": None},
        {"orderId": order, "status": "Main Street 5, Berlin", "previousStatus": None},
        {"orderId": order, "status": "jane@example.com", "previousStatus": None},
        {"orderId": order, "status": "solid cube\nfacet normal 0 0 1", "previousStatus": None},
        {"orderId": order, "status": {"street": "Main St"}, "previousStatus": None},
        # and a key may not be left out
        {"orderId": order, "status": "SHIPPED"},
    ]
    for data in leaks:
        with pytest.raises(ValueError):
            webhooks.build_payload("order.status_changed", AT, **data)


def test_every_event_builds_with_ids_and_statuses_only() -> None:
    for event, fields in webhooks.EVENT_FIELDS.items():
        data = {key: (uuid.uuid4() if key.endswith("Id") else "DONE") for key in fields}
        payload = webhooks.build_payload(event, AT, **data)
        assert set(payload) == {"type", "timestamp", "data"}
        assert set(payload["data"]) == set(fields)


def test_unknown_event_and_naive_timestamps_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        webhooks.build_payload("order.exploded", AT)
    with pytest.raises(ValueError):
        webhooks.build_payload("comment.added", datetime(2026, 1, 1), commentId=uuid.uuid4(),
                               modelId=uuid.uuid4())


def test_retry_schedule_first_within_a_minute_growing_for_a_day() -> None:
    delays = [webhooks.retry_delay(n, jitter=0.999) for n in range(1, webhooks.MAX_ATTEMPTS)]
    assert delays[0] is not None and delays[0] <= 60
    assert all(a < b for a, b in itertools.pairwise(delays))
    plain = [webhooks.retry_delay(n) for n in range(1, webhooks.MAX_ATTEMPTS)]
    assert sum(plain) >= 24 * 3600
    assert webhooks.retry_delay(webhooks.MAX_ATTEMPTS) is None
    assert webhooks.retry_delay(0) is None


def test_decisions_from_status_codes() -> None:
    delivered = webhooks.decide(204, attempts_made=3)
    assert delivered.outcome is webhooks.Outcome.DELIVERED and delivered.retry_in_s is None
    gone = webhooks.decide(410, attempts_made=1)
    assert gone.outcome is webhooks.Outcome.GONE and gone.disable_endpoint
    for code in (None, 301, 302, 400, 404, 429, 500, 503):
        decision = webhooks.decide(code, attempts_made=1)
        assert decision.outcome is webhooks.Outcome.FAILED and decision.retry_in_s == 30
        assert not decision.disable_endpoint
    last = webhooks.decide(500, attempts_made=webhooks.MAX_ATTEMPTS)
    assert last.outcome is webhooks.Outcome.FAILED and last.retry_in_s is None


def test_retry_after_postpones_but_never_brings_forward() -> None:
    assert webhooks.decide(503, 1, retry_after_s=600).retry_in_s == 600
    assert webhooks.decide(429, 1, retry_after_s=1).retry_in_s == 30
    assert webhooks.decide(503, 1, retry_after_s=10**9).retry_in_s == webhooks.MAX_RETRY_AFTER_S
    assert webhooks.decide(503, webhooks.MAX_ATTEMPTS, retry_after_s=60).retry_in_s is None
    assert webhooks.decide(200, 1, retry_after_s=60).retry_in_s is None
    assert webhooks.parse_retry_after(" 120 ") == 120
    for value in (None, "", "-5", "1.5", "Wed, 21 Oct 2026 07:28:00 GMT", "\u0661"):
        assert webhooks.parse_retry_after(value) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/printvault",
        "http://hooks.example.com:8080/a?b=c",
        "https://203.0.113.7/hook",
        "https://[2001:db8::1]:8443/hook",
    ],
)
def test_valid_urls(url: str) -> None:
    assert webhooks.validate_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "javascript:alert(1)",
        "https://user:pass@hooks.example.com/",
        "https://token@hooks.example.com/",
        "https://hooks.example.com@10.0.0.1/",
        "https://hooks.example.com\\@10.0.0.1/",
        "https://hooks.example.com/ a",
        "https://hooks.example.com/\r\nX-Injected: 1",
        "https://bücher.example/",
        "https:///path-only",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com:0/",
        "https://hooks.example.com/#fragment",
        "https://under_score.example.com/",
        "https://hooks.example.com/" + "a" * 2048,
        "",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(BadUserInput) as caught:
        webhooks.validate_url(url)
    assert caught.value.extensions["field"] == "url"


def test_quota_bounds_the_number_of_endpoints() -> None:
    webhooks.check_quota(webhooks.MAX_WEBHOOKS_PER_COMPANY - 1)
    with pytest.raises(BadUserInput):
        webhooks.check_quota(webhooks.MAX_WEBHOOKS_PER_COMPANY)
