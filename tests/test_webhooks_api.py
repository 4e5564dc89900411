"""Webhooks through the API: register, receive signed thin events, retries, 410, replay.

Receivers are real HTTP servers on loopback sockets (tests/http_receiver.py), so these
apps set WEBHOOK_ALLOW_PRIVATE_NETWORKS; one test proves loopback is refused without it.
Deliveries run on the job engine of the app (in-process broker); retry delays are
shortened by patching the schedule (the schedule itself is tested in test_webhook_rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from domain import webhooks
from domain.enums import CompanyKind
from storage.crypto import KeyRing
from storage.models import Company, Model3D, Webhook, WebhookDelivery
from tests.conftest import serving
from tests.helpers import ADDRESS, Api, Caller, analysed_model, box_stl, offer_every_material
from tests.http_receiver import Received, Receiver, answer, response

CREATE = """mutation($u: String!, $e: [String!]!) {
  createWebhook(url: $u, events: $e) { secret webhook { id url events active } } }"""
LIST = """{ webhooks { id url events active
  deliveries(first: 50) { edges { node { id event attempt status responseCode at } } } } }"""
ORDER_EVENTS = ["order.requested", "order.assigned", "order.status_changed"]


_KEYRING: list[KeyRing] = []  # the serving app's, for the sealed analysis facts


@pytest.fixture
async def hooked(database: str, settings, tmp_path: Path) -> AsyncIterator[Api]:
    """An app whose webhooks may reach loopback receivers."""
    async with _hooked_app(settings, tmp_path) as api:
        yield api


@pytest.fixture
async def hooked_slow_walls(database: str, settings, tmp_path: Path) -> AsyncIterator[Api]:
    """The same, with the most rays allowed: a wall check of 0.1 s or more, so its
    result always comes after DONE is recorded (milliseconds) and the two stages are two
    events (a check that ends before DONE is recorded gives one: the complete report)."""
    async with _hooked_app(settings, tmp_path, wall_thickness_samples=20_000) as api:
        yield api


@contextlib.asynccontextmanager
async def _hooked_app(settings, tmp_path: Path, **changes: Any) -> AsyncIterator[Api]:
    changed = replace(
        settings,
        storage_url=f"file://{tmp_path / 'objects'}",
        webhook_allow_private_networks=True,
        **changes,
    )
    async with serving(changed) as api:
        _KEYRING[:] = [api.services.keyring]
        yield api


async def _model(owner: Caller) -> Model3D:
    """A DONE, printable model (orders need one: NOT_PRINTABLE otherwise); every print
    service offers every material, so any may be assigned."""
    for company in await Company.filter(kind=CompanyKind.PRINT_SERVICE):
        await offer_every_material(company.id)
    return await analysed_model(_KEYRING[0], owner.user.company_id, owner.user.id)


async def _request_order(api: Api, customer: Caller, model: Model3D) -> str:
    data = await api.ok(
        """mutation($i: OrderInput!) { requestOrder(input: $i) { id } }""",
        {"i": {"modelId": str(model.id), "quantity": 2, "material": "PETG",
               "shippingAddress": ADDRESS, "billingAddress": ADDRESS,
               "billingInfo": "VAT DE123"}},
        customer.token,
    )
    return data["requestOrder"]["id"]


async def _until(predicate, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def _verified(secret: str, received: Received) -> dict:
    webhooks.verify(secret, received.headers, received.body, now=int(time.time()))
    return json.loads(received.body)


async def test_loopback_is_refused_unless_private_networks_are_allowed(api: Api) -> None:
    admin = await api.customer()
    async with Receiver(answer(200)) as receiver:
        body = await api.gql(CREATE, {"u": receiver.url(), "e": ["order.requested"]}, admin.token)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert body["errors"][0]["extensions"]["field"] == "url"
        # Numeric spellings of loopback and the metadata address are refused as well.
        for url in ("http://2130706433/", "http://169.254.169.254/latest", "http://[::1]:9/"):
            body = await api.gql(CREATE, {"u": url, "e": ["order.requested"]}, admin.token)
            assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", url
    assert await Webhook.all().count() == 0
    assert receiver.received == []


@pytest.mark.parametrize(
    ("url", "events"),
    [
        ("ftp://example.com/hook", ["order.requested"]),
        ("https://user:pass@example.com/hook", ["order.requested"]),
        ("javascript:alert(1)", ["order.requested"]),
        ("https://example.com/hook", ["order.exploded"]),
        ("https://example.com/hook", []),
    ],
)
async def test_bad_registrations_are_refused(hooked: Api, url: str, events: list[str]) -> None:
    admin = await hooked.customer()
    code = await hooked.error_code(CREATE, {"u": url, "e": events}, admin.token)
    assert code == "BAD_USER_INPUT"
    assert await Webhook.all().count() == 0


async def test_who_may_register_and_see_webhooks(hooked: Api) -> None:
    admin = await hooked.customer()
    company = await Company.get(id=admin.user.company_id)
    colleague = await hooked.member(company, admin.user.role, admin=False)
    other_admin = await hooked.customer()
    staff = await hooked.staff()
    provider = await hooked.provider()
    url = "http://127.0.0.1:9/hook"
    assert await hooked.error_code(CREATE, {"u": url, "e": ORDER_EVENTS}, colleague.token) == (
        "FORBIDDEN"
    )
    assert await hooked.error_code(CREATE, {"u": url, "e": ORDER_EVENTS}, provider.token) == (
        "FORBIDDEN"
    )
    answer_ = await hooked.client.post(
        "/graphql", json={"query": CREATE, "variables": {"u": url, "e": ORDER_EVENTS}},
        headers={"Authorization": f"Bearer {admin.token}"},
    )
    assert answer_.headers["cache-control"] == "no-store"  # the secret must not be cached
    created = answer_.json()["data"]["createWebhook"]
    assert created["secret"].startswith("whsec_")
    hook_id = created["webhook"]["id"]
    # The secret is stored sealed: never in clear.
    row = await Webhook.get(id=hook_id)
    assert created["secret"] not in row.secret_sealed
    # Owner and staff see it; another company's admin and a colleague do not.
    assert [h["id"] for h in (await hooked.ok(LIST, token=admin.token))["webhooks"]] == [hook_id]
    assert hook_id in [h["id"] for h in (await hooked.ok(LIST, token=staff.token))["webhooks"]]
    assert (await hooked.ok(LIST, token=other_admin.token))["webhooks"] == []
    assert await hooked.error_code(LIST, token=colleague.token) == "FORBIDDEN"
    # Deleting someone else's answers NOT_FOUND and deletes nothing.
    delete = "mutation($id: ID!) { deleteWebhook(id: $id) }"
    assert await hooked.error_code(delete, {"id": hook_id}, other_admin.token) == "NOT_FOUND"
    assert await Webhook.exists(id=hook_id)
    assert (await hooked.ok(delete, {"id": hook_id}, admin.token))["deleteWebhook"] is True
    assert not await Webhook.exists(id=hook_id)


async def test_a_quota_bounds_endpoints_per_company(hooked: Api) -> None:
    admin = await hooked.customer()
    for number in range(webhooks.MAX_WEBHOOKS_PER_COMPANY):
        await hooked.ok(CREATE, {"u": f"http://127.0.0.1:9/h{number}", "e": ORDER_EVENTS},
                        admin.token)
    code = await hooked.error_code(CREATE, {"u": "http://127.0.0.1:9/x", "e": ORDER_EVENTS},
                                   admin.token)
    assert code == "BAD_USER_INPUT"
    assert await Webhook.filter(company_id=admin.user.company_id).count() == (
        webhooks.MAX_WEBHOOKS_PER_COMPANY
    )


async def test_order_events_reach_the_customer_and_the_provider_signed_and_thin(
    hooked: Api,
) -> None:
    customer = await hooked.customer()
    stranger = await hooked.customer()
    print_service = await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
    provider = await hooked.provider(print_service, admin=True)
    staff = await hooked.staff()
    model = await _model(customer)
    async with (
        Receiver(answer(200)) as mine,
        Receiver(answer(204)) as providers,
        Receiver(answer(200)) as strangers,
    ):
        secret = (await hooked.ok(CREATE, {"u": mine.url(), "e": ORDER_EVENTS},
                                  customer.token))["createWebhook"]["secret"]
        provider_secret = (await hooked.ok(CREATE, {"u": providers.url(), "e": ORDER_EVENTS},
                                           provider.token))["createWebhook"]["secret"]
        await hooked.ok(CREATE, {"u": strangers.url(), "e": ORDER_EVENTS}, stranger.token)

        started = time.monotonic()
        order_id = await _request_order(hooked, customer, model)
        await _until(lambda: _count(mine, 1))
        first_latency = time.monotonic() - started
        await hooked.ok(
            "mutation($o: ID!, $p: ID!) { assignOrder(orderId: $o, providerCompanyId: $p) { id } }",
            {"o": order_id, "p": str(print_service.id)}, staff.token,
        )
        await hooked.ok(
            "mutation($o: ID!) { updateOrderStatus(orderId: $o, status: ACCEPTED) { id } }",
            {"o": order_id}, provider.token,
        )
        await _until(lambda: _count(mine, 3))
        await _until(lambda: _count(providers, 2))
        await _until(lambda: _delivered(5))  # each answer recorded, not only received
        await asyncio.sleep(0.3)
        assert strangers.received == []  # another company's endpoint hears nothing

    assert first_latency < 5.0
    bodies = [_verified(secret, r) for r in mine.received]
    assert [b["type"] for b in bodies] == ORDER_EVENTS
    assert bodies[0]["data"] == {
        "orderId": order_id, "modelId": str(model.id),
        "companyId": str(customer.user.company_id), "status": "REQUESTED",
    }
    assert bodies[2]["data"] == {
        "orderId": order_id, "status": "ACCEPTED", "previousStatus": "ASSIGNED"
    }
    # Thin: no address, billing data or name anywhere in any body.
    for received in mine.received + providers.received:
        text = received.body.decode()
        for secret_word in ("Hauptstr", "VAT", "Berlin", "bracket", "Max"):
            assert secret_word not in text
    provider_bodies = [_verified(provider_secret, r) for r in providers.received]
    assert [b["type"] for b in provider_bodies] == ["order.assigned", "order.status_changed"]
    # A signature made with another endpoint's secret does not verify.
    with pytest.raises(webhooks.WebhookSignatureError):
        webhooks.verify(provider_secret, mine.received[0].headers, mine.received[0].body,
                        now=int(time.time()))
    # Each try is recorded and visible to the owner.
    listed = (await hooked.ok(LIST, token=customer.token))["webhooks"][0]
    nodes = [e["node"] for e in listed["deliveries"]["edges"]]
    assert sorted(n["event"] for n in nodes) == sorted(ORDER_EVENTS)
    assert {(n["status"], n["responseCode"], n["attempt"]) for n in nodes} == {
        ("DELIVERED", 200, 1)
    }


async def _count(receiver: Receiver, wanted: int) -> bool:
    return len(receiver.received) >= wanted


async def test_a_receiver_down_then_up_gets_the_event_with_the_same_id(
    hooked: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "RETRY_DELAYS_S", (0.2, 0.2, 0.2, 0.2, 0.2))
    customer = await hooked.customer()
    model = await _model(customer)
    answers = iter([503, 0, 500])  # 0: the connection is dropped without an answer

    async def flaky(received: Received, writer: asyncio.StreamWriter) -> None:
        status = next(answers, 200)
        if status:
            writer.write(response(status))
            await writer.drain()
        writer.close()

    async with Receiver(flaky) as receiver:
        await hooked.ok(CREATE, {"u": receiver.url(), "e": ["order.requested"]}, customer.token)
        await _request_order(hooked, customer, model)
        await _until(lambda: _delivered(1), within=15)
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(receiver.received) == 4 and len(ids) == 1
    rows = await WebhookDelivery.all().order_by("attempt")
    assert [(r.attempt, r.status, r.response_code) for r in rows] == [
        (1, "FAILED", 503), (2, "FAILED", None), (3, "FAILED", 500), (4, "DELIVERED", 200)
    ]
    assert {r.message_id for r in rows} == ids


async def _delivered(wanted: int) -> bool:
    return await WebhookDelivery.filter(status="DELIVERED").count() >= wanted


async def test_a_receiver_that_is_not_listening_is_retried_until_it_is(
    hooked: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Down (connection refused) for several tries, then up on the same port."""
    monkeypatch.setattr(webhooks, "RETRY_DELAYS_S", (0.3,) * 9)
    customer = await hooked.customer()
    model = await _model(customer)
    async with Receiver(answer(200)) as probe:
        port = probe.port
    await hooked.ok(CREATE, {"u": f"http://127.0.0.1:{port}/hook", "e": ["order.requested"]},
                    customer.token)
    await _request_order(hooked, customer, model)
    await _until(lambda: _failed(2), within=10)
    receiver = Receiver(answer(200))
    receiver._server = await asyncio.start_server(receiver._serve, "127.0.0.1", port)
    receiver.port = port
    try:
        await _until(lambda: _delivered(1), within=10)
    finally:
        await receiver.__aexit__()
    rows = await WebhookDelivery.all().order_by("attempt")
    assert rows[-1].status == "DELIVERED"
    assert all(r.error == "connect_error" for r in rows[:-1])
    assert len({r.message_id for r in rows}) == 1


async def _failed(wanted: int) -> bool:
    return await WebhookDelivery.filter(status="FAILED").count() >= wanted


async def test_410_disables_the_endpoint(hooked: Api) -> None:
    customer = await hooked.customer()
    model = await _model(customer)
    async with Receiver(answer(410)) as receiver:
        await hooked.ok(CREATE, {"u": receiver.url(), "e": ["order.requested"]}, customer.token)
        await _request_order(hooked, customer, model)
        await _until(lambda: _status("GONE"))
        await _request_order(hooked, customer, model)
        await asyncio.sleep(0.5)
    assert len(receiver.received) == 1
    assert (await Webhook.get(company_id=customer.user.company_id)).active is False
    assert await WebhookDelivery.filter(status="PENDING").count() == 0


async def _status(status: str) -> bool:
    return await WebhookDelivery.filter(status=status).exists()


async def test_redelivery_replays_the_same_message(hooked: Api) -> None:
    customer = await hooked.customer()
    other_admin = await hooked.customer()
    model = await _model(customer)
    async with Receiver(answer(200)) as receiver:
        await hooked.ok(CREATE, {"u": receiver.url(), "e": ["order.requested"]}, customer.token)
        await _request_order(hooked, customer, model)
        # The receiver has the message before the worker records the answer: wait for
        # the record, not for the message.
        await _until(lambda: _delivered(1))
        first = await WebhookDelivery.get(status="DELIVERED")
        replay = "mutation($d: ID!) { redeliverWebhook(deliveryId: $d) }"
        assert await hooked.error_code(replay, {"d": str(first.id)}, other_admin.token) == (
            "NOT_FOUND"
        )
        assert (await hooked.ok(replay, {"d": str(first.id)}, customer.token))["redeliverWebhook"]
        for bad in ("99999999999999999999999", "-1", "0", "1e3", "١٢", " 1"):
            assert await hooked.error_code(replay, {"d": bad}, customer.token) == "NOT_FOUND"
        await _until(lambda: _delivered(2))
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    assert receiver.received[0].body == receiver.received[1].body
    rows = await WebhookDelivery.all().order_by("attempt")
    assert [(r.attempt, r.status) for r in rows] == [(1, "DELIVERED"), (2, "DELIVERED")]


async def test_a_redirect_to_an_internal_address_is_not_followed(hooked: Api) -> None:
    customer = await hooked.customer()
    model = await _model(customer)
    async with (
        Receiver(answer(200)) as internal,
        Receiver(answer(302, headers={"Location": internal.url("/admin")})) as redirecting,
    ):
        await hooked.ok(CREATE, {"u": redirecting.url(), "e": ["order.requested"]},
                        customer.token)
        await _request_order(hooked, customer, model)
        await _until(lambda: _status("FAILED"))
    assert internal.received == []
    row = await WebhookDelivery.get(attempt=1)
    assert row.response_code == 302


async def test_an_analysis_and_a_comment_reach_the_models_company(
    hooked_slow_walls: Api,
) -> None:
    """Published by the job engine when the (real, isolated) analysis finishes."""
    hooked = hooked_slow_walls
    customer = await hooked.customer()
    provider = await hooked.provider(admin=True)
    async with Receiver(answer(200)) as mine, Receiver(answer(200)) as providers:
        events = [
            "model.analysis_done", "model.analysis_failed", "model.checks_done", "comment.added"
        ]
        secret = (await hooked.ok(CREATE, {"u": mine.url(), "e": events},
                                  customer.token))["createWebhook"]["secret"]
        await hooked.ok(CREATE, {"u": providers.url(), "e": events}, provider.token)
        uploaded = await hooked.upload(box_stl(), token=customer.token)
        model_id = uploaded.json()["data"]["uploadModel"]["id"]
        # DONE, then the complete verdict once the wall check (after DONE) has run.
        await _until(lambda: _count(mine, 2), within=120)
        await hooked.ok('mutation($m: ID!) { addComment(modelId: $m, body: "ok") { id } }',
                        {"m": model_id}, customer.token)
        await _until(lambda: _count(mine, 3))
        await asyncio.sleep(0.3)
    by_type = {event["type"]: event for event in (_verified(secret, r) for r in mine.received)}
    assert set(by_type) == {"model.analysis_done", "model.checks_done", "comment.added"}
    for kind in ("model.analysis_done", "model.checks_done"):
        assert by_type[kind]["data"] == {"modelId": model_id, "analysisStatus": "DONE"}
    comment = by_type["comment.added"]
    assert comment["data"]["modelId"] == model_id
    assert providers.received == []  # not the provider's model
