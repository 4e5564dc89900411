"""What every resolver sees of the request: caller, IP, settings, loaders."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from domain import policy
from domain.errors import DomainError
from domain.policy import ANONYMOUS, Subject, Viewer
from domain.settings import Settings
from resolvers.loaders import Loaders
from storage.models import User


@dataclass
class Context:
    settings: Settings
    services: Any = None
    viewer: Viewer = ANONYMOUS
    user: User | None = None
    # Set when the request carried a token that is not valid: operations that
    # need a caller then fail with it rather than acting anonymously.
    auth_error: DomainError | None = None
    ip: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    request: Any = None
    response: Any = None
    loaders: Loaders = field(default_factory=Loaders)
    _relations: dict[tuple[str, Any], frozenset[policy.Rel]] = field(default_factory=dict)

    async def relations_to(self, subject: Subject) -> frozenset[policy.Rel]:
        """The caller's relations to an object, computed once per request and object."""
        key = (subject.kind, subject.id)
        if key not in self._relations:
            self._relations[key] = await policy.relations(
                self.viewer, subject, self.loaders.providers_of_model.load
            )
        return self._relations[key]

    async def can_reach(self, subject: Subject) -> bool:
        return policy.grants(policy.REACH[subject.kind], await self.relations_to(subject))

    async def authorize(self, key: str, subject: Subject) -> None:
        await policy.authorize(key, self.viewer, subject, self.loaders.providers_of_model.load)
