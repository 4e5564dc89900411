"""E-mail notices about orders, sent by the job engine to a real SMTP server (aiosmtpd).

A status change mails the customer who ordered; an assignment mails the members of the
provider company. A user who turned notices off (`setOrderNotices(enabled: false)`)
gets none; other companies' people never get any.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from domain.enums import CompanyKind, Role
from runtime import notices
from storage.crypto import KeyRing
from storage.models import Company, Order
from tests.conftest import serving
from tests.helpers import ADDRESS, Api, analysed_model, offer_every_material
from tests.test_mailer import Inbox, smtp_server

ASSIGN = "mutation($o: ID!, $p: ID!) { assignOrder(orderId: $o, providerCompanyId: $p) { id } }"
STEP = "mutation($o: ID!, $s: OrderStatus!) { updateOrderStatus(orderId: $o, status: $s) { id } }"


@pytest.fixture
async def mailing(database: str, settings, tmp_path: Path) -> AsyncIterator[tuple[Api, Inbox]]:
    inbox = Inbox()
    async with smtp_server(inbox) as port:
        changed = replace(
            settings,
            storage_url=f"file://{tmp_path / 'objects'}",
            smtp_url=f"smtp://127.0.0.1:{port}",
            mail_from="orders@printvault.test",
            public_url="https://pv.test",
        )
        async with serving(changed) as api:
            yield api, inbox


async def _until_mails(inbox: Inbox, count: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if len(inbox.messages) >= count:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # and nothing more arrives meanwhile


async def test_status_changes_and_assignments_are_mailed_unless_turned_off(
    mailing: tuple[Api, Inbox],
) -> None:
    api, inbox = mailing
    customer = await api.customer()
    colleague = await api.member(await Company.get(id=customer.user.company_id), Role.CUSTOMER)
    p1 = await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
    provider = await api.provider(p1)
    quiet_provider = await api.provider(p1)
    outsider = await api.provider()
    staff = await api.staff()
    # A DONE, printable model, and print services offering its material (issue 9).
    model = await analysed_model(
        KeyRing(api.settings.master_keys, api.settings.active_key_id),
        customer.user.company_id, customer.user.id,
    )
    for company in await Company.filter(kind=CompanyKind.PRINT_SERVICE):
        await offer_every_material(company.id)
    me = "{ me { orderNotices } }"
    assert (await api.ok(me, token=quiet_provider.token))["me"]["orderNotices"] is True
    off = "mutation { setOrderNotices(enabled: false) }"
    assert (await api.ok(off, token=quiet_provider.token))["setOrderNotices"] is False
    assert (await api.ok(me, token=quiet_provider.token))["me"]["orderNotices"] is False

    order = await api.ok(
        "mutation($i: OrderInput!) { requestOrder(input: $i) { id } }",
        {"i": {"modelId": str(model.id), "quantity": 1, "material": "PETG",
               "shippingAddress": ADDRESS, "billingAddress": ADDRESS}},
        customer.token,
    )
    order_id = order["requestOrder"]["id"]
    await api.ok(ASSIGN, {"o": order_id, "p": str(p1.id)}, staff.token)
    await _until_mails(inbox, 1)
    [(_, to, message, _)] = inbox.messages
    assert to == [provider.user.email]  # not the one who turned notices off
    assert message["Subject"] == "A new print order was assigned to you"
    assert f"https://pv.test/orders/{order_id}" in message.get_content()

    inbox.messages.clear()
    await api.ok(STEP, {"o": order_id, "s": "ACCEPTED"}, provider.token)
    await _until_mails(inbox, 1)
    [(_, to, message, _)] = inbox.messages
    assert to == [customer.user.email]  # the customer who ordered, not the colleague
    body = message.get_content()
    assert "is now accepted" in body and "Hauptstr" not in body
    everyone = {addr for _, rcpts, _, _ in inbox.messages for addr in rcpts}
    assert colleague.user.email not in everyone and outsider.user.email not in everyone

    # The customer turns notices off: the next step mails nobody.
    inbox.messages.clear()
    await api.ok(off, token=customer.token)
    await api.ok(STEP, {"o": order_id, "s": "IN_PRODUCTION"}, provider.token)
    await _until_mails(inbox, 1, within=1.5)
    assert inbox.messages == []
    # Others may not read whether someone gets notices.
    users = await api.gql(
        "{ me { company { members { orderNotices } } } }", token=colleague.token
    )
    values = [m["orderNotices"] for m in users["data"]["me"]["company"]["members"]]
    assert sorted(values, key=str) == [None, True]  # own: readable; the colleague's: not
    assert any(e["extensions"]["code"] == "FORBIDDEN" for e in users["errors"])


class BusyOnce(Inbox):
    """Answers the first recipient with 451 (try later), then accepts."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refused == 0:
            self.refused += 1
            return "451 4.3.0 try again later"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


async def test_a_busy_mail_server_gets_the_notice_on_a_later_try(
    database: str, settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notices, "RETRY_WAITS_S", (0.2, 0.2))
    inbox = BusyOnce()
    async with smtp_server(inbox) as port:
        changed = replace(
            settings, storage_url=f"file://{tmp_path / 'objects'}",
            smtp_url=f"smtp://127.0.0.1:{port}", mail_from="orders@printvault.test",
            public_url="https://pv.test",
        )
        async with serving(changed) as api:
            p1 = await Company.create(name="Druck AG", kind=CompanyKind.PRINT_SERVICE)
            provider = await api.provider(p1)
            customer = await api.customer()
            order = await Order.create(
                customer_id=customer.user.id, company_id=customer.user.company_id,
                provider_id=p1.id, status="ASSIGNED", quantity=1, material="PETG",
                shipping_address={}, billing_address={},
            )
            await api.services.jobs.enqueue_notice(notices.NEW_ASSIGNMENT, order.id, "ASSIGNED")
            await _until_mails(inbox, 1)
    assert inbox.refused == 1
    assert [to for _, to, _, _ in inbox.messages] == [[provider.user.email]]
