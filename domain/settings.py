"""One settings object, read once from environment variables (API.md, "Running it").

The embedded default needs no configuration: secrets are generated under
DATA_DIR on first run (0600). Production (`APP_ENV=production`) refuses to
start unless the secrets are given explicitly, because generated keys on a
scaled-out deployment would differ per machine and lose data.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
# What customers may order prints in (MATERIALS overrides it, comma-separated).
DEFAULT_MATERIALS = ("PLA", "PETG", "ABS", "ASA", "TPU", "PA12", "RESIN_STANDARD", "RESIN_TOUGH")


class SettingsError(RuntimeError):
    """The configuration cannot be used; the message says which variable."""


@dataclass(frozen=True)
class Settings:
    app_env: str = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    database_url: str = ""
    storage_url: str = ""
    s3_endpoint_url: str | None = None
    s3_sse: str = "AES256"
    s3_kms_key_id: str | None = None
    max_upload_bytes: int = 256 * MIB
    max_request_bytes: int = MIB  # JSON bodies; multipart has its own caps
    max_multipart_fields_bytes: int = MIB  # all non-file parts of a multipart request
    request_header_timeout_seconds: float = 10.0
    request_body_timeout_seconds: float = 20.0  # plus 1 s per REQUEST_BODY_MIN_RATE bytes
    request_body_min_rate: int = 500  # bytes per second
    # key id -> 32-byte key; the first one wraps new data keys, the others only unwrap.
    master_keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    secret_key: bytes = field(default=b"", repr=False)
    session_idle_seconds: int = 2 * 3600
    session_absolute_seconds: int = 12 * 3600
    invitation_ttl_seconds: int = 7 * 24 * 3600
    download_link_seconds: int = 300
    job_broker_url: str = ""
    redis_url: str = ""
    rate_limits: str = ""  # overrides, e.g. "login_ip=100/minute"
    rate_limit_prefix: str = "printvault"
    trusted_proxies: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    analysis_timeout_seconds: int = 120
    analysis_memory_bytes: int = 4096 * MIB
    min_wall_thickness_mm: float = 0.8
    build_volume_mm: tuple[float, float, float] = (250.0, 210.0, 220.0)
    ip_retention_days: int = 30
    orphan_grace_seconds: int = 3600
    backup_period_seconds: int = 24 * 3600
    backup_keep: int = 14
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    materials: tuple[str, ...] = DEFAULT_MATERIALS

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def active_key_id(self) -> str:
        return next(iter(self.master_keys))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment once; generate embedded-default secrets if allowed."""
    env = os.environ if env is None else env
    app_env = env.get("APP_ENV", "development")
    data_dir = Path(env.get("DATA_DIR", "data")).resolve()
    production = app_env == "production"
    master_keys = _master_keys(env, data_dir, production)
    secret_key = _secret_key(env, data_dir, production)
    return Settings(
        app_env=app_env,
        host=env.get("HOST", "127.0.0.1"),
        port=_int(env, "PORT", 8000),
        data_dir=data_dir,
        database_url=env.get("DATABASE_URL") or f"sqlite://{data_dir / 'printvault.sqlite3'}",
        storage_url=env.get("STORAGE_URL") or f"file://{data_dir / 'objects'}",
        s3_endpoint_url=env.get("S3_ENDPOINT_URL") or None,
        s3_sse=env.get("S3_SSE", "AES256"),
        s3_kms_key_id=env.get("S3_KMS_KEY_ID") or None,
        max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 256 * MIB),
        max_request_bytes=_int(env, "MAX_REQUEST_BYTES", MIB),
        max_multipart_fields_bytes=_int(env, "MAX_MULTIPART_FIELDS_BYTES", MIB),
        request_header_timeout_seconds=_float(env, "REQUEST_HEADER_TIMEOUT_SECONDS", 10.0),
        request_body_timeout_seconds=_float(env, "REQUEST_BODY_TIMEOUT_SECONDS", 20.0),
        request_body_min_rate=_int(env, "REQUEST_BODY_MIN_RATE", 500),
        master_keys=master_keys,
        secret_key=secret_key,
        session_idle_seconds=_int(env, "SESSION_IDLE_SECONDS", 2 * 3600),
        session_absolute_seconds=_int(env, "SESSION_ABSOLUTE_SECONDS", 12 * 3600),
        download_link_seconds=_int(env, "DOWNLOAD_LINK_SECONDS", 300),
        job_broker_url=env.get("JOB_BROKER_URL", ""),
        redis_url=env.get("REDIS_URL", ""),
        rate_limits=env.get("RATE_LIMITS", ""),
        rate_limit_prefix=env.get("RATE_LIMIT_PREFIX", "printvault"),
        trusted_proxies=_csv(env.get("TRUSTED_PROXIES", "")),
        cors_origins=_csv(env.get("CORS_ORIGINS", "")),
        analysis_timeout_seconds=_int(env, "ANALYSIS_TIMEOUT_SECONDS", 120),
        analysis_memory_bytes=_int(env, "ANALYSIS_MEMORY_BYTES", 4096 * MIB),
        min_wall_thickness_mm=_float(env, "MIN_WALL_THICKNESS_MM", 0.8),
        build_volume_mm=_build_volume(env.get("BUILD_VOLUME_MM", "250x210x220")),
        ip_retention_days=_int(env, "IP_RETENTION_DAYS", 30),
        orphan_grace_seconds=_int(env, "ORPHAN_GRACE_SECONDS", 3600),
        backup_period_seconds=_int(env, "BACKUP_PERIOD_SECONDS", 24 * 3600),
        backup_keep=_int(env, "BACKUP_KEEP", 14),
        tls_certfile=env.get("TLS_CERTFILE") or None,
        tls_keyfile=env.get("TLS_KEYFILE") or None,
        materials=_csv(env.get("MATERIALS", "")) or DEFAULT_MATERIALS,
    )


def _master_keys(env: Mapping[str, str], data_dir: Path, production: bool) -> dict[str, bytes]:
    """MASTER_KEYS is `kid:base64key,kid:base64key`; the first entry is the active one."""
    raw = env.get("MASTER_KEYS", "")
    if not raw:
        if production:
            raise SettingsError("APP_ENV=production requires MASTER_KEYS")
        raw = _generated_secret(data_dir / "keys" / "master_keys", _new_master_key_line)
    keys: dict[str, bytes] = {}
    for entry in _csv(raw):
        kid, _, encoded = entry.partition(":")
        key = _b64(encoded, "MASTER_KEYS")
        if not kid or len(key) != 32:
            raise SettingsError("MASTER_KEYS entries must be `id:base64 of 32 bytes`")
        keys[kid] = key
    if not keys:
        raise SettingsError("MASTER_KEYS is empty")
    return keys


def _secret_key(env: Mapping[str, str], data_dir: Path, production: bool) -> bytes:
    raw = env.get("SECRET_KEY", "")
    if not raw:
        if production:
            raise SettingsError("APP_ENV=production requires SECRET_KEY")
        raw = _generated_secret(data_dir / "keys" / "secret_key", _new_secret_line)
    key = _b64(raw, "SECRET_KEY")
    if len(key) < 32:
        raise SettingsError("SECRET_KEY must be base64 of at least 32 bytes")
    return key


def _new_master_key_line() -> str:
    kid = "k" + secrets.token_hex(4)
    return f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def _new_secret_line() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _generated_secret(path: Path, make) -> str:
    """Read a generated secret, creating it (0600, directory 0700) on first run."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = make()
    # O_EXCL: two processes starting at once must not each write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _b64(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SettingsError(f"{name} is not valid base64") from exc


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, default))
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name, default))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number") from exc


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _build_volume(value: str) -> tuple[float, float, float]:
    try:
        x, y, z = (float(part) for part in value.lower().split("x"))
    except ValueError as exc:
        raise SettingsError("BUILD_VOLUME_MM must look like 250x210x220") from exc
    return (x, y, z)
