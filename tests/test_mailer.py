"""runtime/mailer.py against a real SMTP server (aiosmtpd) on a loopback socket, port 0."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from runtime import mailer
from runtime.mailer import LogMailer, MailError, SmtpMailer, make_mailer, parse_smtp_url
from tests.http_receiver import self_signed

FROM = "notices@printvault.test"
TO = "jane.doe@customer.test"
PUBLIC = "https://pv.test"
TOKEN = "pvr_" + "Q" * 40

# aiosmtpd leaves its TLS connections to the loop they ran on (Server.close() does not
# end them); in the session-wide loop they stalled a later test's app shutdown. Each
# test here gets a loop of its own, closed with whatever it left behind.
pytestmark = pytest.mark.asyncio(loop_scope="function")


class Inbox:
    """aiosmtpd handler that keeps what arrives, or answers what a test tells it to."""

    def __init__(self, rcpt_answer: str | None = None, data_answer: str = "250 OK") -> None:
        self.rcpt_answer = rcpt_answer
        self.data_answer = data_answer
        self.messages: list[tuple[str, list[str], email.message.EmailMessage, bool]] = []
        self.logins: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_answer:
            return self.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_answer.startswith("250"):
            over_tls = session.ssl is not None or bool(
                server.transport.get_extra_info("ssl_object")
            )
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed, over_tls))
        return self.data_answer

    def authenticator(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.logins.append(auth_data.login.decode())
        ok = (auth_data.login, auth_data.password) == (b"alice", b"s3cret/:@")
        return AuthResult(success=ok)


@asynccontextmanager
async def smtp_server(inbox: Inbox, **options) -> AsyncIterator[int]:
    implicit_tls = options.pop("implicit_tls", None)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(inbox, hostname="mail.test", **options), "127.0.0.1", 0, ssl=implicit_tls
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_password_reset_mail_arrives_with_its_public_url_link() -> None:
    inbox = Inbox()
    async with smtp_server(inbox) as port:
        sender = SmtpMailer(f"smtp://127.0.0.1:{port}", FROM, PUBLIC)
        await sender.send(TO, "password_reset", token=TOKEN, minutes=30)
    [(mail_from, recipients, message, _)] = inbox.messages
    assert mail_from == FROM and recipients == [TO]
    assert message["From"] == FROM and message["To"] == TO
    assert message["Subject"] == "Reset your PrintVault password"
    assert message["Auto-Submitted"] == "auto-generated" and message["Message-ID"]
    body = message.get_content().replace("\r\n", "\n")  # SMTP writes CRLF
    assert f"{PUBLIC}/reset-password#token={TOKEN}\n" in body and "30 minutes" in body


async def test_credentials_go_only_over_starttls(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed(tmp_path, "localhost")
    inbox = Inbox()
    url = f"smtp://alice:{'s3cret%2F%3A%40'}@localhost:{{port}}"
    async with smtp_server(
        inbox, tls_context=server_tls, require_starttls=True, authenticator=inbox.authenticator
    ) as port:
        sender = SmtpMailer(url.format(port=port), FROM, PUBLIC, tls_context=client_tls)
        await sender.send(TO, "verify_email", token=TOKEN)
    assert inbox.logins == ["alice"]
    [(_, _, message, over_tls)] = inbox.messages
    assert over_tls and f"{PUBLIC}/verify-email#token={TOKEN}" in message.get_content()


async def test_credentials_are_never_sent_to_a_server_without_starttls() -> None:
    inbox = Inbox()
    async with smtp_server(
        inbox, authenticator=inbox.authenticator, auth_require_tls=False
    ) as port:
        sender = SmtpMailer(f"smtp://alice:s3cret@127.0.0.1:{port}", FROM, PUBLIC)
        with pytest.raises(MailError) as caught:
            await sender.send(TO, "account_exists")
    assert not caught.value.retryable
    assert inbox.logins == [] and inbox.messages == []


async def test_smtps_speaks_tls_from_the_first_byte(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed(tmp_path, "localhost")
    inbox = Inbox()
    async with smtp_server(
        inbox,
        implicit_tls=server_tls,
        authenticator=inbox.authenticator,
        auth_require_tls=False,  # aiosmtpd only knows STARTTLS; the socket itself is TLS here
    ) as port:
        url = f"smtps://alice:s3cret%2F%3A%40@localhost:{port}"
        await SmtpMailer(url, FROM, PUBLIC, tls_context=client_tls).send(
            TO, "invitation", token=TOKEN, company="Acme\r\nBcc: evil@x.test"
        )
        untrusted = SmtpMailer(url, FROM, PUBLIC)  # the system CAs do not know this server
        with pytest.raises(MailError) as caught:
            await untrusted.send(TO, "account_exists")
    [(_, recipients, message, over_tls)] = inbox.messages
    assert over_tls and recipients == [TO] and inbox.logins == ["alice"]
    assert "Bcc" not in message and "join AcmeBcc: evil@x.test on" in message.get_content()
    assert caught.value.retryable


async def test_a_failing_server_raises_a_retryable_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(MailError) as down:
        await SmtpMailer(f"smtp://127.0.0.1:{closed_port}", FROM, PUBLIC).send(
            TO, "account_exists"
        )
    assert down.value.retryable and TO not in str(down.value)

    async with smtp_server(Inbox(data_answer="451 4.3.0 try again later")) as port:
        with pytest.raises(MailError) as busy:
            await SmtpMailer(f"smtp://127.0.0.1:{port}", FROM, PUBLIC).send(
                TO, "new_assignment", order_id=uuid.uuid4()
            )
    assert busy.value.retryable

    async with smtp_server(Inbox(rcpt_answer="550 5.1.1 no such user")) as port:
        with pytest.raises(MailError) as unknown:
            await SmtpMailer(f"smtp://127.0.0.1:{port}", FROM, PUBLIC).send(
                TO, "order_status", order_id=uuid.uuid4(), status="SHIPPED"
            )
    assert not unknown.value.retryable and TO not in str(unknown.value)


async def test_a_server_that_never_greets_times_out_within_the_bound() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # bounded by the client closing
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(MailError) as caught:
            await SmtpMailer(f"smtp://127.0.0.1:{port}", FROM, PUBLIC, timeout=1).send(
                TO, "account_exists"
            )
        elapsed = time.monotonic() - started
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.retryable and elapsed < 5


async def test_the_log_backend_logs_no_body_token_or_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = b"k" * 32
    logger = LogMailer(FROM, PUBLIC, hash_key=key)
    with caplog.at_level(logging.DEBUG):
        await logger.send(TO, "password_reset", token=TOKEN, minutes=30)
        await logger.send(TO.upper(), "order_status", order_id=uuid.uuid4(), status="SHIPPED")
    lines = [record.getMessage() for record in caplog.records if record.name == "printvault.mail"]
    assert len(lines) == 2 and "password_reset" in lines[0] and "order_status" in lines[1]
    fingerprint = logger.recipient(TO)
    assert fingerprint in lines[0] and fingerprint in lines[1]  # one person, one fingerprint
    everything = " ".join(lines + [repr(record.args) for record in caplog.records])
    for secret in (TO, "jane", "customer.test", TOKEN, "reset-password", "Choose a new"):
        assert secret.lower() not in everything.lower()
    assert LogMailer(FROM, PUBLIC, hash_key=b"x" * 32).recipient(TO) != fingerprint


@pytest.mark.parametrize("name", sorted(mailer.TEMPLATES))
def test_every_template_renders_with_public_url_links(name: str) -> None:
    examples = {
        "token": TOKEN,
        "minutes": 30,
        "company": "Acme GmbH",
        "order_id": "0b8e3f5e-8c1d-4f0a-9a57-2f1e3c4d5e6f",
        "status": "IN_PRODUCTION",
    }
    template = mailer.TEMPLATES[name]
    context = {key: examples[key] for key in template.fields}
    rendered = mailer.render(name, PUBLIC + "/", context)
    assert rendered.subject == template.subject
    assert f"{PUBLIC}{template.link.format(**context)}\n" in rendered.body
    assert "{" not in rendered.body
    message = mailer.compose(FROM, TO, rendered)
    assert message.get_content_type() == "text/plain"


def test_bad_template_input_is_refused() -> None:
    bad = [
        ("password_reset", {"token": TOKEN}),  # missing field
        ("password_reset", {"token": TOKEN, "minutes": 30, "extra": "x"}),
        ("password_reset", {"token": "abc def ghi jkl", "minutes": 30}),
        ("password_reset", {"token": TOKEN + "\r\n", "minutes": 30}),
        ("password_reset", {"token": TOKEN, "minutes": "30; rm"}),
        ("order_status", {"order_id": "../admin", "status": "SHIPPED"}),
        ("order_status", {"order_id": uuid.uuid4(), "status": "shipped <b>"}),
        ("invitation", {"token": TOKEN, "company": "x" * 201}),
    ]
    for name, context in bad:
        with pytest.raises(ValueError):
            mailer.render(name, PUBLIC, context)
    with pytest.raises(KeyError):
        mailer.render("nonexistent", PUBLIC, {})
    rendered = mailer.render("account_exists", PUBLIC, {})
    for address in ("a@b.test\r\nBcc: c@d.test", "a@b.test, c@d.test", "<a@b.test>", "nobody"):
        with pytest.raises(ValueError):
            mailer.compose(FROM, address, rendered)


def test_smtp_url_forms_and_secrecy() -> None:
    plain = parse_smtp_url("smtp://mail.internal:2525")
    assert (plain.host, plain.port, plain.implicit_tls, plain.start_tls) == (
        "mail.internal", 2525, False, None,
    )
    secure = parse_smtp_url("smtps://user%40x:p%40ss@smtp.example.com:465")
    assert (secure.username, secure.password, secure.implicit_tls) == ("user@x", "p@ss", True)
    assert "p@ss" not in repr(secure)
    assert parse_smtp_url("smtp://u:p@mail.internal").start_tls is True
    assert parse_smtp_url("smtps://mail.internal").port == 465
    for bad in ("http://mail:25", "smtp://", "smtp://u:hunter2@mail:99999", "smtp://m/x?y=1"):
        with pytest.raises(ValueError) as caught:
            parse_smtp_url(bad)
        assert "hunter2" not in str(caught.value)


def test_public_url_must_be_a_plain_http_base() -> None:
    assert LogMailer(FROM, "http://127.0.0.1:8000/").public_url == "http://127.0.0.1:8000"
    for bad in ("javascript:alert(1)", "ftp://pv.test", "https://pv.test/?x=1", "pv.test"):
        with pytest.raises(ValueError):
            LogMailer(FROM, bad)
        with pytest.raises(ValueError):
            SmtpMailer("smtp://m:25", FROM, bad)


def test_make_mailer_picks_the_transport() -> None:
    assert make_mailer("", FROM, PUBLIC, production=True) is None
    assert isinstance(make_mailer("", FROM, PUBLIC, production=False), LogMailer)
    assert isinstance(make_mailer("smtp://m:25", FROM, PUBLIC, production=True), SmtpMailer)
