"""Look-ups of people: by e-mail address and by bearer token.

E-mails are sealed (storage/sealed_fields.py), so they are found through their
blind index, never by comparing the column; every path that searches by e-mail
(log-in, sign-up and invitation uniqueness, password reset) comes through here.
Tokens are found by their digest on every authenticated request, through SQL built
once (storage/prepared.py).
"""

from __future__ import annotations

from tortoise.queryset import QuerySet

from storage.models import ApiToken, Invitation, Session, User
from storage.prepared import PreparedLookup
from storage.sealed_fields import email_index


async def find_user_by_email(email: str, *, include_deleted: bool = False) -> User | None:
    """The account with this address (case-insensitive), or None."""
    if not isinstance(email, str):
        return None
    query = User.filter(email_index=email_index(email))
    if not include_deleted:
        query = query.filter(deleted_at=None)
    return await query.first()


async def email_taken(email: str) -> bool:
    """Whether any account, erased ones included, holds this address."""
    return await User.exists(email_index=email_index(email))


def invitations_for_email(email: str) -> QuerySet[Invitation]:
    """Invitations sent to this address (a queryset, to filter further)."""
    return Invitation.filter(email_index=email_index(email))


# The caller's user and company come along: nearly every request reads them (issue 14).
session_by_digest = PreparedLookup(
    Session, lambda digest: Session.filter(token_hash=digest).select_related("user__company")
)
api_token_by_digest = PreparedLookup(
    ApiToken, lambda digest: ApiToken.filter(token_hash=digest).select_related("user__company")
)
