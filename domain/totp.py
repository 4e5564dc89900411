"""TOTP second factor (RFC 6238 via pyotp) and single-use recovery codes.

A code is accepted once: the accepted time step is stored and the update is
conditional on it being newer, so a replay, even a concurrent one, fails.
One step of clock drift is allowed either way.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

import pyotp
from tortoise.expressions import Q
from tortoise.timezone import now

from domain.secrets_box import seal, token_digest, unseal
from storage.models import RecoveryCode, User

ISSUER = "PrintVault"
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_SEAL_PURPOSE = b"totp-secret"


@dataclass(frozen=True)
class TotpSetup:
    secret: str
    provisioning_uri: str
    recovery_codes: list[str]


def new_secret() -> str:
    return pyotp.random_base32(length=32)  # 160 bits, as RFC 4226 recommends


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def seal_secret(secret_key: bytes, secret: str) -> str:
    return seal(secret_key, _SEAL_PURPOSE, secret)


def unseal_secret(secret_key: bytes, sealed: str) -> str:
    return unseal(secret_key, _SEAL_PURPOSE, sealed)


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step whose code equals `code`, within the allowed drift, or None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int(time.time() if now is None else now) // totp.interval
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


async def consume_code(user: User, secret: str, code: str) -> bool:
    """Accept a TOTP code at most once per user and time step."""
    step = matching_step(secret, code)
    if step is None:
        return False
    updated = await User.filter(Q(id=user.id) & Q(totp_last_step__lt=step)).update(
        totp_last_step=step
    )
    return updated == 1


def new_recovery_codes() -> list[str]:
    return [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]


def _recovery_code() -> str:
    raw = secrets.token_hex(8)  # 64 bits each, shown once
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:]}"


async def store_recovery_codes(secret_key: bytes, user: User, codes: list[str]) -> None:
    await RecoveryCode.filter(user_id=user.id).delete()
    await RecoveryCode.bulk_create(
        [RecoveryCode(user_id=user.id, code_hash=_code_digest(secret_key, c)) for c in codes]
    )


async def consume_recovery_code(secret_key: bytes, user: User, code: str) -> bool:
    digest = _code_digest(secret_key, code)
    updated = await RecoveryCode.filter(user_id=user.id, code_hash=digest, used_at=None).update(
        used_at=now()
    )
    return updated == 1


def looks_like_recovery_code(code: str) -> bool:
    return len(code.strip()) == 19 and code.count("-") == 3


def _code_digest(secret_key: bytes, code: str) -> str:
    return token_digest(secret_key, "recovery:" + code.strip().lower())
