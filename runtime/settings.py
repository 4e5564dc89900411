"""One settings object, read once from environment variables (API.md, "Running it").

Each setting is declared once, as a field of `Settings` carrying its
environment variable, default and parser (`env(...)` below); `load_settings`
reads them all from that table. A variable that is unset or empty takes the
default.

The embedded default needs no configuration: secrets are generated under
DATA_DIR on first run (0600). Production (`APP_ENV=production`) refuses to
start unless the secrets are given explicitly, because generated keys on a
scaled-out deployment would differ per machine and lose data.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


class SettingsError(RuntimeError):
    """The configuration cannot be used; the message says which variable."""


# --- parsers: text of a variable -> value; the name is for the error message -------------


def _text(name: str, value: str) -> str:
    return value


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer") from exc


# The wall profile keeps a distance per ray and travels in the child's result, which
# is bounded (domain/analysis/sandbox.MAX_RESULT_BYTES, 1 MiB): 20,000 rays take 0.33 MB.
MAX_WALL_SAMPLES = 20_000


def _wall_samples(name: str, value: str) -> int:
    number = _int(name, value)
    if not 100 <= number <= MAX_WALL_SAMPLES:
        raise SettingsError(f"{name} must be between 100 and {MAX_WALL_SAMPLES}")
    return number


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be true or false")


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number") from exc


def _switch(name: str, value: str) -> bool:
    value = value.strip().lower()
    if value not in ("on", "off"):
        raise SettingsError(f"{name} must be `on` or `off`")
    return value == "on"


def _csv(name: str, value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _path(name: str, value: str) -> Path:
    return Path(value).resolve()


def _build_volume(name: str, value: str) -> tuple[float, float, float]:
    try:
        x, y, z = (float(part) for part in value.lower().split("x"))
    except ValueError as exc:
        raise SettingsError(f"{name} must look like 250x210x220") from exc
    return (x, y, z)


def _b64(name: str, value: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SettingsError(f"{name} is not valid base64") from exc


def _master_keys(name: str, value: str) -> dict[str, bytes]:
    """`kid:base64key,kid:base64key`; the first entry is the active one."""
    keys: dict[str, bytes] = {}
    for entry in _csv(name, value):
        kid, _, encoded = entry.partition(":")
        key = _b64(name, encoded)
        if not kid or len(key) != 32:
            raise SettingsError(f"{name} entries must be `id:base64 of 32 bytes`")
        keys[kid] = key
    if not keys:
        raise SettingsError(f"{name} is empty")
    return keys


def _secret_key(name: str, value: str) -> bytes:
    key = _b64(name, value)
    if len(key) < 32:
        raise SettingsError(f"{name} must be base64 of at least 32 bytes")
    return key


def _new_master_key_line() -> str:
    kid = "k" + secrets.token_hex(4)
    return f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def _new_secret_line() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Generated:
    """A secret the embedded default creates under DATA_DIR/keys when it is not given."""

    file_name: str
    make: Callable[[], str]


def env(
    name: str,
    default: Any,
    parse: Callable[[str, str], Any] = _text,
    *,
    generated: Generated | None = None,
    secret: bool = False,
) -> Any:
    """One setting: its variable, default and parser, kept on the dataclass field."""
    meta = {"env": name, "parse": parse, "generated": generated}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


@dataclass(frozen=True)
class Settings:
    app_env: str = env("APP_ENV", "development")
    host: str = env("HOST", "127.0.0.1")
    port: int = env("PORT", 8000, _int)
    data_dir: Path = env("DATA_DIR", Path("data"), _path)
    # Empty: derived from data_dir by load_settings (sqlite file, local objects).
    database_url: str = env("DATABASE_URL", "")
    storage_url: str = env("STORAGE_URL", "")
    s3_endpoint_url: str | None = env("S3_ENDPOINT_URL", None)
    s3_sse: str = env("S3_SSE", "AES256")
    s3_kms_key_id: str | None = env("S3_KMS_KEY_ID", None)
    max_upload_bytes: int = env("MAX_UPLOAD_BYTES", 256 * MIB, _int)
    max_request_bytes: int = env("MAX_REQUEST_BYTES", MIB, _int)  # JSON bodies
    # All non-file parts of a multipart request (operations, map, part headers).
    max_multipart_fields_bytes: int = env("MAX_MULTIPART_FIELDS_BYTES", MIB, _int)
    request_header_timeout_seconds: float = env("REQUEST_HEADER_TIMEOUT_SECONDS", 10.0, _float)
    # Plus 1 s per REQUEST_BODY_MIN_RATE bytes announced.
    request_body_timeout_seconds: float = env("REQUEST_BODY_TIMEOUT_SECONDS", 20.0, _float)
    request_body_min_rate: int = env("REQUEST_BODY_MIN_RATE", 500, _int)  # bytes per second
    # key id -> 32-byte key; the first one wraps new data keys, the others only unwrap.
    master_keys: dict[str, bytes] = env(
        "MASTER_KEYS", {}, _master_keys,
        generated=Generated("master_keys", _new_master_key_line), secret=True,
    )
    secret_key: bytes = env(
        "SECRET_KEY", b"", _secret_key,
        generated=Generated("secret_key", _new_secret_line), secret=True,
    )
    session_idle_seconds: int = env("SESSION_IDLE_SECONDS", 2 * 3600, _int)
    session_absolute_seconds: int = env("SESSION_ABSOLUTE_SECONDS", 12 * 3600, _int)
    invitation_ttl_seconds: int = env("INVITATION_TTL_SECONDS", 7 * 24 * 3600, _int)
    download_link_seconds: int = env("DOWNLOAD_LINK_SECONDS", 300, _int)
    job_broker_url: str = env("JOB_BROKER_URL", "")
    redis_url: str = env("REDIS_URL", "")
    rate_limits: str = env("RATE_LIMITS", "")  # overrides, e.g. "login_ip=100/minute"
    rate_limit_prefix: str = env("RATE_LIMIT_PREFIX", "printvault")
    trusted_proxies: tuple[str, ...] = env("TRUSTED_PROXIES", (), _csv)
    cors_origins: tuple[str, ...] = env("CORS_ORIGINS", (), _csv)
    analysis_timeout_seconds: int = env("ANALYSIS_TIMEOUT_SECONDS", 120, _int)
    analysis_memory_bytes: int = env("ANALYSIS_MEMORY_BYTES", 4096 * MIB, _int)
    min_wall_thickness_mm: float = env("MIN_WALL_THICKNESS_MM", 0.8, _float)
    # Rays of the wall check (after DONE): more find smaller thin spots, and cost time.
    wall_thickness_samples: int = env("WALL_THICKNESS_SAMPLES", 2000, _wall_samples)
    build_volume_mm: tuple[float, float, float] = env(
        "BUILD_VOLUME_MM", (250.0, 210.0, 220.0), _build_volume
    )
    ip_retention_days: int = env("IP_RETENTION_DAYS", 30, _int)
    orphan_grace_seconds: int = env("ORPHAN_GRACE_SECONDS", 3600, _int)
    backup_period_seconds: int = env("BACKUP_PERIOD_SECONDS", 24 * 3600, _int)
    backup_keep: int = env("BACKUP_KEEP", 14, _int)
    tls_certfile: str | None = env("TLS_CERTFILE", None)
    tls_keyfile: str | None = env("TLS_KEYFILE", None)
    # Observability (issue 14). /metrics answers only with `Authorization: Bearer
    # <METRICS_TOKEN>`; unset, it answers 404. Several processes on one host share
    # their counters through PROMETHEUS_MULTIPROC_DIR (prometheus-client's own variable).
    metrics_token: str = env("METRICS_TOKEN", "", secret=True)
    prometheus_multiproc_dir: str = env("PROMETHEUS_MULTIPROC_DIR", "")
    log_format: str = env("LOG_FORMAT", "json")  # json (one object a line) or text
    # The Redis stream of analysis jobs; deployments sharing one Redis use their own.
    job_queue: str = env("JOB_QUEUE", "printvault:analysis")
    # Issue 11: webhook URLs may resolve to loopback/private addresses (dev, tests).
    webhook_allow_private_networks: bool = env("WEBHOOK_ALLOW_PRIVATE_NETWORKS", False, _bool)
    # GraphiQL's page (`on`/`off`); unset: on, except in production (README).
    graphiql_switch: bool | None = env("GRAPHIQL", None, _switch)
    # An address the account logged in from within this many days is not held back by
    # the per-account log-in limit (runtime/rate_limits.py), only by the per-address one.
    known_ip_days: int = env("KNOWN_IP_DAYS", 30, _int)
    # E-mail (runtime/mailer.py): unset SMTP_URL logs mails in development and turns mail
    # features off in production. PUBLIC_URL is the base of links in mails.
    smtp_url: str = env("SMTP_URL", "", secret=True)  # may carry the SMTP password
    mail_from: str = env("MAIL_FROM", "printvault@localhost.localdomain")
    public_url: str = env("PUBLIC_URL", "")
    # Previews (issue 12): the child's wall-clock limit (memory: ANALYSIS_MEMORY_BYTES)
    # and how long a preview link stays valid.
    preview_timeout_seconds: int = env("PREVIEW_TIMEOUT_SECONDS", 120, _int)
    preview_link_seconds: int = env("PREVIEW_LINK_SECONDS", 300, _int)
    # `off`: no preview jobs (Model.preview stays null); the test suite's default app.
    previews: bool = env("PREVIEWS", True, _switch)
    # Analyse an upload's plaintext in the child while it streams in (the job
    # then only records the result); off: the job fetches and decrypts the file.
    analyse_while_uploading: bool = env("ANALYSE_WHILE_UPLOADING", True, _switch)

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def graphiql(self) -> bool:
        return not self.is_production if self.graphiql_switch is None else self.graphiql_switch

    @property
    def link_base(self) -> str:
        """PUBLIC_URL, or this server's own address (API.md: default http://HOST:PORT)."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def active_key_id(self) -> str:
        return next(iter(self.master_keys))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the environment once; generate embedded-default secrets if allowed."""
    environ = os.environ if environ is None else environ
    production = environ.get("APP_ENV", "development") == "production"
    data_dir = _path("DATA_DIR", environ.get("DATA_DIR") or "data")
    values: dict[str, Any] = {}
    for setting in dataclasses.fields(Settings):
        name, parse, generated = (setting.metadata[k] for k in ("env", "parse", "generated"))
        raw = environ.get(name, "")
        if not raw and generated is not None:
            if production:
                raise SettingsError(f"APP_ENV=production requires {name}")
            raw = _generated_secret(data_dir / "keys" / generated.file_name, generated.make)
        if raw:
            values[setting.name] = parse(name, raw)
    values["data_dir"] = data_dir
    values["database_url"] = values.get("database_url") or (
        f"sqlite://{data_dir / 'printvault.sqlite3'}"
    )
    values["storage_url"] = values.get("storage_url") or f"file://{data_dir / 'objects'}"
    return Settings(**values)


def _generated_secret(path: Path, make: Callable[[], str]) -> str:
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
