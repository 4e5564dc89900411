"""Password hashing (Argon2id) and the password policy.

Hashing costs ~0.1 s of CPU on purpose, so it runs in a worker thread: the
event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from domain.errors import BadUserInput

MIN_LENGTH = 12
MAX_LENGTH = 256  # long passphrases are welcome; the cap only stops abuse
MIN_STRENGTH = 3  # zxcvbn score 0..4; its dictionaries include the 30k most common passwords
_ZXCVBN_MAX = 72  # zxcvbn refuses longer input; the first 72 chars decide anyway

# Above OWASP's minimum (m=19 MiB, t=2, p=1): m=64 MiB, t=3, p=1.
HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=1)


@functools.cache
def _dummy_hash() -> str:
    """Verified when an email is unknown, so a miss costs as much as a hit and
    response times do not reveal which addresses have accounts. Made on first
    use, not at import: importing must not spend an Argon2 hash."""
    return HASHER.hash("dummy password for timing equality")


def check_policy(password: str, user_inputs: Iterable[str] = ()) -> None:
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise BadUserInput(
            f"The password needs at least {MIN_LENGTH} characters.", field="password"
        )
    if len(password) > MAX_LENGTH:
        raise BadUserInput(
            f"The password may have at most {MAX_LENGTH} characters.", field="password"
        )
    result = zxcvbn(password[:_ZXCVBN_MAX], user_inputs=[s for s in user_inputs if s])
    if result["score"] < MIN_STRENGTH:
        hint = result["feedback"].get("warning") or "It is too common or too easy to guess."
        raise BadUserInput(f"The password is too weak: {hint}", field="password")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    known = stored_hash is not None
    return await asyncio.to_thread(_verify, stored_hash or _dummy_hash(), password, not known)


def _verify(stored_hash: str, password: str, is_dummy: bool) -> bool:
    try:
        HASHER.verify(stored_hash, password[:MAX_LENGTH])
    except (VerificationError, InvalidHashError):
        return False
    return not is_dummy


def needs_rehash(stored_hash: str) -> bool:
    return HASHER.check_needs_rehash(stored_hash)
