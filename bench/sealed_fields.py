"""Cost of sealed personal-data columns (storage/sealed_fields.py), per value.

Prints the time to seal and to open one e-mail-sized value next to its floor,
one bare AES-256-GCM encryption/decryption of the same bytes measured in the
same run, and the blind index next to a bare HMAC-SHA256.
Run: .venv/bin/python bench/sealed_fields.py
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.crypto import KeyRing
from storage.sealed_fields import associated_data, email_index, open_text, seal_text

N = 20_000
VALUE = "ada.lovelace-0123456789@example.com"


def per_call_us(statement: object) -> float:
    return min(timeit.repeat(statement, number=N, repeat=3)) / N * 1e6  # type: ignore[arg-type]


def main() -> None:
    ring = KeyRing({"k1": os.urandom(32)}, "k1")
    secret = os.urandom(32)
    aad = associated_data("app_user", "email", "0b9e6a2e-2a53-4a53-9d36-3f7c1c0c3c11")
    sealed = seal_text(VALUE, aad, ring)
    aead, nonce, data = AESGCM(os.urandom(32)), os.urandom(12), VALUE.encode()
    boxed = aead.encrypt(nonce, data, aad)
    key = os.urandom(32)
    rows = [
        ("seal one value", per_call_us(lambda: seal_text(VALUE, aad, ring)),
         "floor: one AES-GCM encrypt", per_call_us(lambda: aead.encrypt(nonce, data, aad))),
        ("open one value", per_call_us(lambda: open_text(sealed, aad, ring)),
         "floor: one AES-GCM decrypt", per_call_us(lambda: aead.decrypt(nonce, boxed, aad))),
        ("blind index", per_call_us(lambda: email_index(VALUE, secret)),
         "floor: one HMAC-SHA256", per_call_us(lambda: hmac.digest(key, data, hashlib.sha256))),
    ]
    print(f"sealed columns, {N} calls each, best of 3 (microseconds per call)")
    for name, ours, floor_name, floor in rows:
        ratio = ours / floor
        print(f"  {name:16} {ours:7.2f} us   {floor_name:28} {floor:7.2f} us   ({ratio:.1f}x)")
    print(f"  stored size: {len(sealed)} chars for a {len(VALUE)}-char e-mail")


if __name__ == "__main__":
    main()
