"""Look-ups by e-mail: the one way to find a person by address.

E-mails are sealed (storage/sealed_fields.py), so they are found through their
blind index, never by comparing the column; every path that searches by e-mail
(log-in, sign-up and invitation uniqueness, password reset) comes through here.
"""

from __future__ import annotations

from tortoise.queryset import QuerySet

from storage.models import Invitation, User
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
