"""Opaque tokens and small sealed values.

Tokens (sessions, API tokens, invitations, recovery codes) have 256 bits of
entropy, so a keyed SHA-256 is enough to store them: a database leak gives
nothing usable, and lookups stay a single indexed equality query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def new_token(prefix: str) -> str:
    """A bearer token; the prefix tells humans and secret scanners what it is."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_digest(secret_key: bytes, token: str) -> str:
    key = derive_key(secret_key, b"token-digest")
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def seal(secret_key: bytes, purpose: bytes, plaintext: str) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(derive_key(secret_key, purpose)).encrypt(nonce, plaintext.encode(), purpose)
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(secret_key: bytes, purpose: bytes, sealed: str) -> str:
    raw = base64.urlsafe_b64decode(sealed.encode())
    return AESGCM(derive_key(secret_key, purpose)).decrypt(raw[:12], raw[12:], purpose).decode()


@lru_cache(maxsize=32)
def derive_key(secret_key: bytes, purpose: bytes) -> bytes:
    # One configured secret, independent keys per use: a flaw in one use leaks nothing of another.
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=b"printvault:" + purpose).derive(
        secret_key
    )
