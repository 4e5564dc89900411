"""TLS for `server.py serve` when TLS_CERTFILE and TLS_KEYFILE are set."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import uvicorn

# Forward secrecy and AEAD ciphers only (what SSL Labs grades A); TLS 1.3 suites are fixed.
TLS_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!SHA1"


def tls_context(
    config: uvicorn.Config, default_factory: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """uvicorn's context, restricted to TLS 1.2 and 1.3 with strong ciphers."""
    context = default_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return context
