"""What every resolver sees of the request: caller, IP, settings, loaders."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from domain import policy
from domain.errors import DomainError
from domain.policy import ANONYMOUS, Subject, Viewer
from runtime.logs import request_id_var
from runtime.settings import Settings
from schema.loaders import Loaders
from storage.models import User
from web.access import access_for


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
    # The X-Request-ID of web/middleware/request_id.py (one id per request, in the
    # logs, the response header and every error's extensions).
    request_id: str = field(default_factory=lambda: request_id_var.get() or uuid.uuid4().hex[:16])
    request: Any = None
    response: Any = None
    loaders: Loaders = field(default_factory=Loaders)
    # Subscriptions: what connection_init carried, and the bearer token it named.
    connection_params: Any = None
    token: str | None = None
    live_subscriptions: int = 0
    access: policy.Access = field(init=False)

    def __post_init__(self) -> None:
        self.set_viewer(self.viewer, self.user)

    def set_viewer(self, viewer: Viewer, user: User | None) -> None:
        """Who the rest of the request is answered for (changes after log-in / sign-up)."""
        self.viewer, self.user = viewer, user
        self.access = access_for(viewer, self.ip, self.loaders)

    @property
    def push(self) -> Any:
        """runtime/push.py's Push of this process (None when no services are open)."""
        return getattr(getattr(self.services, "jobs", None), "push", None)

    def refresh(self) -> None:
        """Forget what this context cached (relations, loaded rows): a subscription
        answers each event with what is true at that moment."""
        self.loaders = Loaders()
        self.access = access_for(self.viewer, self.ip, self.loaders)

    async def relations_to(self, subject: Subject) -> frozenset[policy.Rel]:
        return await self.access.relations_to(subject)
