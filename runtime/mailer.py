"""E-mail: templates as data, messages built with the standard library, sent over SMTP.

`SMTP_URL` selects the transport (`make_mailer`):
- `smtp://host:port`: plain SMTP, upgraded with STARTTLS when the server offers it; with
  credentials (`smtp://user:pass@host:port`) STARTTLS is required, so a password never
  crosses the network in clear.
- `smtps://user:pass@host:port`: TLS from the first byte (implicit TLS, port 465).
- unset: in development a LogMailer writes one line per mail (template name and a keyed
  hash of the recipient: never the address, the body or a token); in production mail
  features are off (`make_mailer` returns None).

Send failures raise MailError: `retryable` is True for what a later try may fix (server
down, timeouts, 4xx answers) and False for permanent refusals (5xx, TLS not offered).
Error texts never carry the recipient or the message: they end up in logs and job records.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

import aiosmtplib

log = logging.getLogger("printvault.mail")

SMTP_TIMEOUT_S = 10.0
MAX_ADDRESS_LENGTH = 254
_ADDRESS = re.compile(r"[^@\s,;<>()\[\]\"\\]+@[^@\s,;<>()\[\]\"\\]+\.[^@\s,;<>()\[\]\"\\]+")
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~]{8,512}")
_ENUM = re.compile(r"[A-Z][A-Z_]{0,31}")


# --- templates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    subject: str  # fixed text: nothing a user typed ever reaches a header
    body: str  # str.format() with the context and {link}
    link: str  # path below PUBLIC_URL, formatted with the (URL-quoted) context
    fields: tuple[str, ...]  # the context it needs, each checked by FIELD_RULES


# Tokens travel in the fragment (#token=): browsers never send it to a server, so it stays
# out of access logs, proxies and Referer headers; the page reads it and calls the API.
TEMPLATES: dict[str, Template] = {
    "password_reset": Template(
        subject="Reset your PrintVault password",
        body=(
            "Someone (hopefully you) asked to reset the password of your PrintVault account.\n"
            "\nChoose a new password here within {minutes} minutes:\n{link}\n"
            "\nThe link works once. If you did not ask for it, ignore this mail: your"
            " password stays unchanged.\n"
        ),
        link="/reset-password#token={token}",
        fields=("token", "minutes"),
    ),
    "verify_email": Template(
        subject="Confirm your e-mail address for PrintVault",
        body="Please confirm that this address belongs to your PrintVault account:\n{link}\n",
        link="/verify-email#token={token}",
        fields=("token",),
    ),
    "invitation": Template(
        subject="You are invited to PrintVault",
        body=(
            "You have been invited to join {company} on PrintVault.\n"
            "\nAccept the invitation here:\n{link}\n"
            "\nIf you did not expect this invitation, ignore this mail.\n"
        ),
        link="/accept-invitation#token={token}",
        fields=("token", "company"),
    ),
    "account_exists": Template(
        subject="Your PrintVault account",
        body=(
            "Someone tried to sign up for PrintVault with this address, which already has"
            " an account.\n\nIf it was you, log in, or reset your password here:\n{link}\n"
            "\nIf it was not you, no action is needed.\n"
        ),
        link="/reset-password",
        fields=(),
    ),
    "order_status": Template(
        subject="Your PrintVault order has a new status",
        body="Your order {order_id} is now {status}.\n\nSee it here:\n{link}\n",
        link="/orders/{order_id}",
        fields=("order_id", "status"),
    ),
    "new_assignment": Template(
        subject="A new print order was assigned to you",
        body="Order {order_id} was assigned to your company on PrintVault.\n\nSee it:\n{link}\n",
        link="/orders/{order_id}",
        fields=("order_id",),
    ),
}

_FOOTER = (
    "\n--\nPrintVault. You receive this because of your account at {public_url}."
    " Notices about orders can be turned off in your settings.\n"
)


def _check_token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError("malformed token")
    return value


def _check_text(value: str) -> str:
    # Printable, one line, bounded: a company name cannot forge lines of the mail.
    cleaned = "".join(char for char in value if char.isprintable()).strip()
    if not cleaned or len(cleaned) > 200:
        raise ValueError("text must be 1 to 200 printable characters")
    return cleaned


def _check_minutes(value: str) -> str:
    if not value.isdigit() or not 1 <= int(value) <= 10080:
        raise ValueError("minutes out of range")
    return value


def _check_enum(value: str) -> str:
    if not _ENUM.fullmatch(value):
        raise ValueError("status must be an enum value")
    return value.replace("_", " ").lower()


FIELD_RULES = {
    "token": _check_token,
    "company": _check_text,
    "minutes": _check_minutes,
    "order_id": lambda value: str(uuid.UUID(value)),
    "status": _check_enum,
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def render(template_name: str, public_url: str, context: Mapping[str, object]) -> Rendered:
    template = TEMPLATES[template_name]
    if set(context) != set(template.fields):
        raise ValueError(f"{template_name} needs exactly {sorted(template.fields)}")
    values = {key: FIELD_RULES[key](str(context[key])) for key in template.fields}
    quoted = {key: quote(value, safe="") for key, value in values.items()}
    link = public_url.rstrip("/") + template.link.format(**quoted)
    body = template.body.format(link=link, **values) + _FOOTER.format(public_url=public_url)
    return Rendered(template.subject, body)


def check_public_url(url: str) -> str:
    """PUBLIC_URL: the base of every link in a mail."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or (
        parts.fragment or parts.username or parts.password
    ):
        raise ValueError("PUBLIC_URL must be an http(s) URL without credentials or query")
    return url.rstrip("/")


def check_address(address: str) -> str:
    if len(address) > MAX_ADDRESS_LENGTH or not _ADDRESS.fullmatch(address):
        raise ValueError("not a single plain e-mail address")
    return address


def compose(mail_from: str, to: str, rendered: Rendered) -> EmailMessage:
    """A plain-text UTF-8 message; the SMTP policy writes CRLF line ends."""
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = check_address(mail_from)
    message["To"] = check_address(to)
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=mail_from.rsplit("@", 1)[1])
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    message.set_content(rendered.body)
    return message


# --- errors and transports ----------------------------------------------------------------


class MailError(Exception):
    retryable = False


class MailRetryableError(MailError):
    retryable = True


class MailRejected(MailError):
    retryable = False


class Mailer(Protocol):
    async def send(self, to: str, template: str, **context: object) -> None: ...


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    implicit_tls: bool
    start_tls: bool | None  # None: use it when offered; True: required
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str) -> SmtpConfig:
    """`smtp://host:port` or `smtps://user:pass@host:port`; errors never echo the URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("SMTP_URL is malformed") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("SMTP_URL must be smtp://host:port or smtps://user:pass@host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("SMTP_URL takes no path, query or fragment")
    implicit = parts.scheme == "smtps"
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return SmtpConfig(
        host=parts.hostname,
        port=port or (465 if implicit else 25),
        implicit_tls=implicit,
        start_tls=None if implicit or username is None else True,
        username=username,
        password=password,
    )


class SmtpMailer:
    def __init__(
        self,
        smtp_url: str,
        mail_from: str,
        public_url: str,
        timeout: float = SMTP_TIMEOUT_S,
        tls_context: ssl.SSLContext | None = None,
        hash_key: bytes | None = None,
    ) -> None:
        self.config = parse_smtp_url(smtp_url)
        self._key = hash_key or secrets.token_bytes(32)
        self.mail_from = check_address(mail_from)
        self.public_url = check_public_url(public_url)
        self.timeout = timeout
        self.tls_context = tls_context

    async def send(self, to: str, template: str, **context: object) -> None:
        message = compose(self.mail_from, to, render(template, self.public_url, context))
        config = self.config
        try:
            await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.implicit_tls,
                start_tls=False if config.implicit_tls else config.start_tls,
                tls_context=self.tls_context,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            raise _by_code(min(codes) if codes else 550) from None
        except aiosmtplib.SMTPResponseException as error:
            raise _by_code(error.code) from None
        except (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPTimeoutError,
            OSError,
            TimeoutError,
        ) as error:
            # Connection refused, reset, timeouts, TLS failures: the server may come back.
            raise MailRetryableError(f"SMTP unreachable ({type(error).__name__})") from None
        except aiosmtplib.SMTPException:
            # The server lacks what SMTP_URL requires (STARTTLS before credentials, an
            # AUTH method): retrying cannot help until the configuration changes.
            raise MailRejected("the SMTP server does not offer what SMTP_URL requires") from None
        log.info("mail %s sent to %s", template, _fingerprint(self._key, to))


def _by_code(code: int) -> MailError:
    if 400 <= code < 500:
        return MailRetryableError(f"SMTP server answered {code}")
    return MailRejected(f"SMTP server answered {code}")


class LogMailer:
    """Development: renders the mail (template errors surface) and logs only that it went."""

    def __init__(self, mail_from: str, public_url: str, hash_key: bytes | None = None) -> None:
        self.mail_from = check_address(mail_from)
        self.public_url = check_public_url(public_url)
        self._key = hash_key or secrets.token_bytes(32)

    async def send(self, to: str, template: str, **context: object) -> None:
        compose(self.mail_from, to, render(template, self.public_url, context))
        log.info("mail %s to %s (not sent: SMTP_URL is not set)", template, self.recipient(to))

    def recipient(self, to: str) -> str:
        return _fingerprint(self._key, to)


def _fingerprint(key: bytes, address: str) -> str:
    """A short keyed hash: lets an operator match log lines, never recover the address."""
    digest = hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()
    return "rcpt:" + digest[:16]


def make_mailer(
    smtp_url: str,
    mail_from: str,
    public_url: str,
    production: bool,
    hash_key: bytes | None = None,
) -> Mailer | None:
    if smtp_url:
        return SmtpMailer(smtp_url, mail_from, public_url, hash_key=hash_key)
    if production:
        return None  # mail features are off (API.md: SMTP_URL)
    return LogMailer(mail_from, public_url, hash_key)
