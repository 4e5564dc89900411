"""Errors are values with a code (API.md, "Errors").

Domain code raises these; `schema/errors.py` is the one place that turns them
into GraphQL errors with `extensions.code`. Anything else is masked as INTERNAL.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """An expected failure the client may be told about, with a stable code."""

    code = "INTERNAL"
    default_message = "Internal error."

    def __init__(self, message: str | None = None, **extensions: Any) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.extensions = extensions


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
    default_message = "Authentication required."


class Forbidden(DomainError):
    code = "FORBIDDEN"
    default_message = "Not allowed."


class NotFound(DomainError):
    code = "NOT_FOUND"
    default_message = "Not found."


class BadUserInput(DomainError):
    code = "BAD_USER_INPUT"
    default_message = "Invalid input."


class MfaRequired(DomainError):
    code = "MFA_REQUIRED"
    default_message = "A valid one-time code is required."


class ReauthRequired(DomainError):
    code = "REAUTH_REQUIRED"
    default_message = "Confirm your password (or log in again) to change credentials."


class RateLimited(DomainError):
    code = "RATE_LIMITED"
    default_message = "Too many attempts; try again later."


class PayloadTooLarge(DomainError):
    code = "PAYLOAD_TOO_LARGE"
    default_message = "The upload is larger than allowed."


class UnsupportedFormat(DomainError):
    code = "UNSUPPORTED_FORMAT"
    default_message = "This file format is not supported."


class InvalidTransition(DomainError):
    code = "INVALID_TRANSITION"
    default_message = "This status change is not allowed."


class NotPrintable(DomainError):
    """An order or quote for a model that cannot be made in that material (API.md)."""

    code = "NOT_PRINTABLE"
    default_message = "The model cannot be printed in this material."


class ServiceUnavailable(DomainError):
    """A dependency (database, object store) is down; the client may retry."""

    code = "INTERNAL"
    default_message = "The service is temporarily unavailable; retry later."


ERROR_CODES = frozenset(
    cls.code
    for cls in (
        Unauthenticated,
        Forbidden,
        NotFound,
        BadUserInput,
        MfaRequired,
        ReauthRequired,
        RateLimited,
        PayloadTooLarge,
        UnsupportedFormat,
        InvalidTransition,
        NotPrintable,
        DomainError,
    )
)
