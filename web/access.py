"""The one per-request `Access` factory: who asks, from where, with the request's loaders.

GraphQL (schema/context.py) and the download endpoint both build their Access
here, so a refusal is audited the same way (with the caller's IP) wherever it
happens.
"""

from __future__ import annotations

from contextlib import suppress
from uuid import UUID

from starlette.requests import HTTPConnection

from domain.policy import Access, Viewer
from schema.loaders import Loaders


def request_ip(connection: HTTPConnection) -> str | None:
    """The caller's IP, as web/middleware/client_ip.py established it."""
    return connection.scope.get("client_ip")


def access_for(viewer: Viewer, ip: str | None, loaders: Loaders | None = None) -> Access:
    loaders = loaders or Loaders()
    providers = loaders.providers_of_model

    def forget(model_id: UUID) -> None:
        with suppress(KeyError):  # strawberry's clear() raises for a key it never loaded
            providers.clear(model_id)

    return Access(viewer, providers.load, ip=ip, forget_providers=forget)
