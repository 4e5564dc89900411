"""Personal data sealed in the database: envelope-encrypted columns and a blind index.

A stolen database file, dump or decrypted backup must not reveal who our
customers are. Columns holding personal data (e-mail, phone, addresses, billing
information, comment bodies, IP addresses) are therefore stored as

    pvf1:<master key id>:<wrapped data key>:<nonce | AES-256-GCM ciphertext>

Each value gets a fresh data key wrapped by the active master key of the
`KeyRing` (the same envelope as files, storage/crypto.py), so `rotate-keys`
re-wraps it without touching the ciphertext. The associated data binds a value
to its table, column and row id: a value copied into another row or column does
not open. (Rows whose id the database assigns on insert, the BigInt ids of
sessions, order events and audit events, are bound to table and column only.)

E-mail addresses must still be found (log-in, sign-up uniqueness, invitations):
next to the sealed address a *blind index* is stored, HMAC-SHA256 of the
normalised address under a key derived from SECRET_KEY. It supports equality
and uniqueness only, and is useless without SECRET_KEY.

Tortoise fields are static, so the keys are installed once per process with
`install_keys` before the database is used; using a sealed field without them
is an error, never a silent plaintext write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from tortoise import fields
from tortoise.models import Model as OrmModel

from domain.secrets_box import derive_key
from storage.crypto import IntegrityError, KeyRing, WrappedKey, new_data_key, rewrap, unwrap

PREFIX = "pvf1"
_AAD = b"printvault/field/v1\x00"
_NONCE_SIZE = 12
_INDEX_PURPOSE = b"email-blind-index"


class SealingNotConfigured(RuntimeError):
    """A sealed column was used before `install_keys`."""


@dataclass(frozen=True)
class SealingKeys:
    ring: KeyRing
    secret_key: bytes


_keys: SealingKeys | None = None


def install_keys(keys: SealingKeys) -> None:
    """Make the process's master keys and SECRET_KEY known to the sealed columns."""
    global _keys
    _keys = keys


def installed_keys() -> SealingKeys:
    if _keys is None:
        raise SealingNotConfigured("sealed database columns need install_keys() first")
    return _keys


# --- values ----------------------------------------------------------------


def associated_data(table: str, column: str, row_id: object | None) -> bytes:
    # Fixed separators; table and column names never contain NUL.
    row = "" if row_id is None else str(row_id)
    return _AAD + f"{table}\x00{column}\x00{row}".encode()


def seal_text(plaintext: str, associated: bytes, ring: KeyRing | None = None) -> str:
    ring = ring or installed_keys().ring
    data_key, wrapped = new_data_key(ring)
    nonce = os.urandom(_NONCE_SIZE)
    sealed = AESGCM(data_key).encrypt(nonce, plaintext.encode(), associated)
    return f"{PREFIX}:{wrapped.key_id}:{_b64(wrapped.blob)}:{_b64(nonce + sealed)}"


def open_text(value: str, associated: bytes, ring: KeyRing | None = None) -> str:
    ring = ring or installed_keys().ring
    wrapped, payload = _parse(value)
    data_key = unwrap(ring, wrapped)
    try:
        return AESGCM(data_key).decrypt(
            payload[:_NONCE_SIZE], payload[_NONCE_SIZE:], associated
        ).decode()
    except (InvalidTag, ValueError):
        raise IntegrityError("sealed column value (moved to another row or altered?)") from None


def rewrap_value(value: str, ring: KeyRing) -> str:
    """The same ciphertext with its data key re-wrapped under the active master key."""
    wrapped, payload = _parse(value)
    fresh = rewrap(ring, wrapped)
    if fresh is wrapped:
        return value
    return f"{PREFIX}:{fresh.key_id}:{_b64(fresh.blob)}:{_b64(payload)}"


def key_id_of(value: str) -> str:
    return _parse(value)[0].key_id


def _parse(value: str) -> tuple[WrappedKey, bytes]:
    parts = value.split(":")
    if len(parts) != 4 or parts[0] != PREFIX or not parts[1]:
        raise IntegrityError("not a sealed column value")
    try:
        return WrappedKey(parts[1], _unb64(parts[2])), _unb64(parts[3])
    except ValueError:
        raise IntegrityError("sealed column value is not base64url") from None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- blind index -------------------------------------------------------------


def normalise_email(email: str) -> str:
    return email.strip().casefold()


def email_index(email: str, secret_key: bytes | None = None) -> str:
    """Keyed digest of the normalised address: equality and uniqueness, nothing else."""
    key = derive_key(secret_key or installed_keys().secret_key, _INDEX_PURPOSE)
    return hmac.new(key, normalise_email(email).encode(), hashlib.sha256).hexdigest()


# --- tortoise fields ---------------------------------------------------------


class Sealed:
    """What sealed columns share; mixed into a tortoise field of the Python type."""

    model: type[OrmModel]
    model_field_name: str

    def plain_text(self, value: Any) -> str:
        return str(value)

    def from_plain_text(self, text: str) -> Any:
        return text

    def to_python_value(self, value: Any) -> Any:
        # Plaintext on the instance; opened by SealedModel._init_from_db, which knows the row.
        return value

    def to_db_value(self, value: Any, instance: Any) -> Any:
        if value is None:
            return None
        if not isinstance(instance, OrmModel):
            # Bulk updates and filters have no row to bind to (and a filter on a
            # plaintext could never match a random ciphertext). Only stored strings
            # pass, as they are: key rotation compares and replaces them.
            if isinstance(value, str) and value.startswith(PREFIX + ":"):
                return value
            raise TypeError(
                f"{self.model_field_name} is sealed: save it through a model instance"
            )
        row_id = instance.pk if _bound(instance) else None
        return seal_text(self.plain_text(value), self.aad(row_id))

    def aad(self, row_id: object | None) -> bytes:
        return associated_data(self.model._meta.db_table, self.model_field_name, row_id)


class EncryptedTextField(Sealed, fields.TextField):  # type: ignore[misc]
    """A text column stored sealed; the model must derive from `SealedModel`."""


class EncryptedJSONField(Sealed, fields.JSONField):  # type: ignore[misc]
    """A JSON value (addresses) stored sealed, in a text column."""

    SQL_TYPE = "TEXT"

    class _db_postgres:
        SQL_TYPE = "TEXT"

    def plain_text(self, value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def from_plain_text(self, text: str) -> Any:
        return json.loads(text)


def _bound(instance: OrmModel) -> bool:
    # Only ids we choose before the insert can be bound (UUIDs); database-generated ones cannot.
    return not instance._meta.pk.generated


class SealedModel(OrmModel):
    """Opens sealed columns when a row is loaded and keeps blind indexes current."""

    # {index column: sealed e-mail column}
    blind_indexes: ClassVar[dict[str, str]] = {}

    class Meta:
        abstract = True

    @classmethod
    def _init_from_db(cls, **kwargs: Any) -> Any:
        row = super()._init_from_db(**kwargs)
        row_id = row.pk if _bound(row) else None
        for name, field in cls._meta.fields_map.items():
            if not isinstance(field, Sealed) or name not in row.__dict__:
                continue
            value = row.__dict__[name]
            if value is not None:
                plain = open_text(value, field.aad(row_id))
                object.__setattr__(row, name, field.from_plain_text(plain))
        return row

    async def save(self, *args: Any, **kwargs: Any) -> None:
        for index, source in self.blind_indexes.items():
            if source in self.__dict__:
                value = getattr(self, source)
                setattr(self, index, None if value is None else email_index(value))
                update_fields = kwargs.get("update_fields")
                if update_fields is not None and source in update_fields:
                    kwargs["update_fields"] = [*update_fields, index]
        await super().save(*args, **kwargs)


def sealed_columns() -> list[tuple[type[SealedModel], str]]:
    """Every (model, field) stored sealed, for key rotation and the leak tests."""
    from storage import models  # models import this module

    found = []
    for model in vars(models).values():
        if isinstance(model, type) and issubclass(model, SealedModel) and model is not SealedModel:
            for name, field in model._meta.fields_map.items():
                if isinstance(field, Sealed):
                    found.append((model, name))
    return found
