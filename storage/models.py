"""Tortoise models: every table of the platform.

Ids are random UUIDs so that they reveal nothing (counts, order of creation)
and cannot be guessed. Secrets (passwords, session and API tokens, recovery
codes, invitation tokens) are only ever stored hashed; the TOTP secret must be
readable to verify codes, so it is stored encrypted (see domain/totp.py).
Personal data (e-mail, phone, addresses, billing information, comment bodies,
IP addresses) is sealed column by column (storage/sealed_fields.py).

Each foreign key is followed by its `<name>_id` column: tortoise adds the
attribute itself; the declaration is for the type checker.
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from tortoise import fields
from tortoise.models import Model as OrmModel

from domain.enums import AnalysisStatus, CompanyKind, Role
from domain.order_states import OrderStatus
from storage.sealed_fields import EncryptedJSONField, EncryptedTextField, SealedModel

__all__ = ["AnalysisStatus", "CompanyKind", "OrderStatus", "Role"]  # stored here


def _uuid_pk() -> fields.UUIDField:
    return fields.UUIDField(primary_key=True, default=uuid.uuid4)


class Company(SealedModel):
    id = _uuid_pk()
    name = fields.CharField(max_length=200)
    kind = fields.CharEnumField(CompanyKind, max_length=16)
    address: fields.JSONField[dict[str, Any] | None] = EncryptedJSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "company"


class User(SealedModel):
    id = _uuid_pk()
    # Stored case-folded and sealed; found and kept unique (API.md: case-insensitive)
    # through its blind index (storage/sealed_fields.py).
    email = EncryptedTextField()
    email_index = fields.CharField(max_length=64, unique=True)
    blind_indexes = {"email_index": "email"}
    first_name = EncryptedTextField()
    last_name = EncryptedTextField()
    phone = EncryptedTextField(null=True)
    address: fields.JSONField[dict[str, Any] | None] = EncryptedJSONField(null=True)
    role = fields.CharEnumField(Role, max_length=16)
    # Membership: one company per user; staff belong to none.
    company: fields.ForeignKeyNullableRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="members", null=True, on_delete=fields.RESTRICT
    )
    company_id: UUID | None
    is_company_admin = fields.BooleanField(default=False)
    password_hash = fields.CharField(max_length=255)
    mfa_enabled = fields.BooleanField(default=False)
    totp_secret_sealed = fields.TextField(null=True)
    totp_pending_sealed = fields.TextField(null=True)
    # The last accepted TOTP time step: a code at or before it is a replay.
    totp_last_step = fields.BigIntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    signup_ip = EncryptedTextField(null=True)
    deleted_at = fields.DatetimeField(null=True)
    email_verified_at = fields.DatetimeField(null=True)

    class Meta:
        table = "app_user"


class RecoveryCode(OrmModel):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="recovery_codes", on_delete=fields.CASCADE
    )
    user_id: UUID
    code_hash = fields.CharField(max_length=64, unique=True)
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "recovery_code"


class Session(SealedModel):
    id = fields.BigIntField(primary_key=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="sessions", on_delete=fields.CASCADE
    )
    user_id: UUID
    created_at = fields.DatetimeField(auto_now_add=True)
    last_seen_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    ip = EncryptedTextField(null=True)
    user_agent = EncryptedTextField(null=True)

    class Meta:
        table = "session"


class ApiToken(OrmModel):
    id = _uuid_pk()
    name = fields.CharField(max_length=100)
    token_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="api_tokens", on_delete=fields.CASCADE
    )
    user_id: UUID
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_token"


class Invitation(SealedModel):
    id = _uuid_pk()
    token_hash = fields.CharField(max_length=64, unique=True)
    email = EncryptedTextField()
    email_index = fields.CharField(max_length=64, db_index=True)
    blind_indexes = {"email_index": "email"}
    role = fields.CharEnumField(Role, max_length=16)
    company: fields.ForeignKeyRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="invitations", on_delete=fields.CASCADE
    )
    company_id: UUID
    invited_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="invitations_sent", null=True, on_delete=fields.SET_NULL
    )
    invited_by_id: UUID | None
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    accepted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "invitation"


class Model3D(SealedModel):
    # An uploaded CAD file: `Model` in the API, renamed here so it is not confused
    # with tortoise's own Model class. (No docstring: tortoise copies docstrings
    # into table comments and breaks on quotes in them.)

    id = _uuid_pk()
    company: fields.ForeignKeyRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="models", on_delete=fields.RESTRICT
    )
    company_id: UUID
    owner: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="models", null=True, on_delete=fields.SET_NULL
    )
    owner_id: UUID | None
    name = fields.CharField(max_length=200)
    file_name = fields.CharField(max_length=255)
    file_size = fields.BigIntField(default=0)
    format = fields.CharField(max_length=16)
    object_key = fields.CharField(max_length=200, unique=True)
    wrapped_key = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    upload_ip = EncryptedTextField(null=True)
    analysis_status = fields.CharEnumField(AnalysisStatus, max_length=16)
    analysis_error = fields.TextField(null=True)
    analysis_attempts = fields.IntField(default=0)
    analysis_started_at = fields.DatetimeField(null=True)

    class Meta:
        table = "model3d"
        # The recovery sweep looks for stranded jobs by status and start time.
        # Pages (issue 14): a company's models and everyone's (staff), newest first,
        # walked by keyset on (created_at, id) without reading the table.
        indexes = (
            ("analysis_status", "analysis_started_at"),
            ("company_id", "created_at", "id"),
            ("created_at", "id"),
        )


class ModelMetadata(OrmModel):
    model: fields.OneToOneRelation[Model3D] = fields.OneToOneField(
        "models.Model3D", related_name="metadata", on_delete=fields.CASCADE, primary_key=True
    )
    model_id: UUID
    file_name = fields.CharField(max_length=255)
    file_size = fields.BigIntField()
    format = fields.CharField(max_length=16)
    size_x = fields.FloatField()
    size_y = fields.FloatField()
    size_z = fields.FloatField()
    volume = fields.FloatField()
    surface_area = fields.FloatField()
    triangle_count = fields.BigIntField()
    body_count = fields.IntField()
    is_watertight = fields.BooleanField()
    printable = fields.BooleanField()
    issues: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(default=list)
    # The hull summary and wall profile a quote needs, sealed with the model's own data
    # key (domain/part_facts.py); null for analyses made before quotes existed.
    hull_sealed = fields.BinaryField(null=True)
    walls_sealed = fields.BinaryField(null=True)
    # Checks still running after DONE, comma-separated ("THIN_WALLS"); empty when the
    # report is complete (domain/analysis_job.py).
    pending_checks = fields.CharField(max_length=64, default="")
    analysed_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "model_metadata"


class Comment(SealedModel):
    id = _uuid_pk()
    model: fields.ForeignKeyRelation[Model3D] = fields.ForeignKeyField(
        "models.Model3D", related_name="comments", on_delete=fields.CASCADE
    )
    model_id: UUID
    author: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="comments", null=True, on_delete=fields.SET_NULL
    )
    author_id: UUID | None
    body = EncryptedTextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    ip = EncryptedTextField(null=True)

    class Meta:
        table = "comment"
        indexes = (("model_id", "created_at", "id"),)  # a model's comments, by keyset


class Order(SealedModel):
    id = _uuid_pk()
    # Orders outlive models and people (legal retention): the links may become null.
    model: fields.ForeignKeyNullableRelation[Model3D] = fields.ForeignKeyField(
        "models.Model3D", related_name="orders", null=True, on_delete=fields.SET_NULL
    )
    model_id: UUID | None
    customer: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="orders", null=True, on_delete=fields.SET_NULL
    )
    customer_id: UUID | None
    company: fields.ForeignKeyRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="orders", on_delete=fields.RESTRICT
    )
    company_id: UUID
    provider: fields.ForeignKeyNullableRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="assigned_orders", null=True, on_delete=fields.RESTRICT
    )
    provider_id: UUID | None
    status = fields.CharEnumField(OrderStatus, max_length=16)
    quantity = fields.IntField()
    material = fields.CharField(max_length=64)
    shipping_address: fields.JSONField[dict[str, Any]] = EncryptedJSONField()
    billing_address: fields.JSONField[dict[str, Any]] = EncryptedJSONField()
    billing_info = EncryptedTextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    ip = EncryptedTextField(null=True)
    # Optimistic locking: an update must name the version it read.
    version = fields.IntField(default=1)
    # Set when ordered from a quote: its total and currency.
    quote: fields.ForeignKeyNullableRelation[Quote] = fields.ForeignKeyField(
        "models.Quote", related_name="orders", null=True, on_delete=fields.SET_NULL
    )
    quote_id: UUID | None
    price = fields.DecimalField(max_digits=14, decimal_places=2, null=True)
    currency = fields.CharField(max_length=3, null=True)

    class Meta:
        table = "print_order"
        # Pages by keyset: a company's orders, a provider's, everyone's (staff).
        indexes = (
            ("company_id", "created_at", "id"),
            ("provider_id", "created_at", "id"),
            ("created_at", "id"),
        )


class OrderEvent(SealedModel):
    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[Order] = fields.ForeignKeyField(
        "models.Order", related_name="events", on_delete=fields.CASCADE
    )
    order_id: UUID
    status = fields.CharEnumField(OrderStatus, max_length=16)
    at = fields.DatetimeField(auto_now_add=True)
    by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="order_events", null=True, on_delete=fields.SET_NULL
    )
    by_id: UUID | None
    note = fields.TextField(null=True)
    ip = EncryptedTextField(null=True)

    class Meta:
        table = "order_event"


class AuditEvent(SealedModel):
    # Who did what, when, from where. Ids of subjects are plain values, not
    # foreign keys, so the trail survives the deletion of what it talks about.

    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField(auto_now_add=True, db_index=True)
    kind = fields.CharField(max_length=64, db_index=True)
    actor_id = fields.UUIDField(null=True, db_index=True)
    company_id = fields.UUIDField(null=True)
    model_id = fields.UUIDField(null=True, db_index=True)
    order_id = fields.UUIDField(null=True)
    ip = EncryptedTextField(null=True)
    detail: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)

    class Meta:
        table = "audit_event"


class MaintenanceRun(OrmModel):
    # One row per periodic task: claiming a run is a conditional update of
    # last_started_at, so of many server and worker processes exactly one runs it.
    name = fields.CharField(max_length=64, primary_key=True)
    last_started_at = fields.DatetimeField()
    last_finished_at = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)

    class Meta:
        table = "maintenance_run"


class Material(OrmModel):
    # A material of the catalogue (domain/materials.py validates every value; prices are
    # exact decimals kept as strings in `spec`, the Material.to_dict() of the domain).
    id = _uuid_pk()
    code = fields.CharField(max_length=32, unique=True)
    active = fields.BooleanField(default=True)
    spec: fields.JSONField[dict[str, Any]] = fields.JSONField()
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "material"


class ProviderMaterial(OrmModel):
    # What a print service offers: one row per (provider company, material).
    id = fields.BigIntField(primary_key=True)
    company: fields.ForeignKeyRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="offered", on_delete=fields.CASCADE
    )
    company_id: UUID
    material: fields.ForeignKeyRelation[Material] = fields.ForeignKeyField(
        "models.Material", related_name="offered_by", on_delete=fields.CASCADE
    )
    material_id: UUID

    class Meta:
        table = "provider_material"
        unique_together = (("company", "material"),)


class Quote(OrmModel):
    # A frozen quote: `snapshot` is domain.quotes.QuoteDraft.to_dict() (material as it was,
    # price with its breakdown, the verdict), never recomputed.
    id = _uuid_pk()
    model: fields.ForeignKeyRelation[Model3D] = fields.ForeignKeyField(
        "models.Model3D", related_name="quotes", on_delete=fields.CASCADE
    )
    model_id: UUID
    company: fields.ForeignKeyRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="quotes", on_delete=fields.RESTRICT
    )
    company_id: UUID
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="quotes", null=True, on_delete=fields.SET_NULL
    )
    created_by_id: UUID | None
    material_code = fields.CharField(max_length=32)
    snapshot: fields.JSONField[dict[str, Any]] = fields.JSONField()
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()

    class Meta:
        table = "quote"


class AccountToken(OrmModel):
    """A one-time token mailed to a user (password reset, e-mail verification): only its
    keyed digest is stored; `used_at` makes it single-use."""

    id = _uuid_pk()
    purpose = fields.CharField(max_length=16)
    token_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="account_tokens", on_delete=fields.CASCADE
    )
    user_id: UUID
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "account_token"


class ModelPreview(OrmModel):
    # The web previews of an analysed model (issue 12): one row once the preview
    # job has run, with both objects (sealed under the model's own data key, so
    # key rotation covers them) or the reason there are none. Deleted with the model.
    model: fields.OneToOneRelation[Model3D] = fields.OneToOneField(
        "models.Model3D", related_name="preview", on_delete=fields.CASCADE, primary_key=True
    )
    model_id: UUID
    glb_key = fields.CharField(max_length=200, null=True, unique=True)
    png_key = fields.CharField(max_length=200, null=True, unique=True)
    glb_size = fields.BigIntField(default=0)
    png_size = fields.BigIntField(default=0)
    triangles = fields.BigIntField(default=0)
    reason = fields.TextField(null=True)  # why there is no preview; None when there is one
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "model_preview"


class Webhook(OrmModel):
    # A partner tool's endpoint. `company` null: registered by staff, for every event.
    # The signing secret must be readable to sign, so it is stored sealed (SECRET_KEY).
    id = _uuid_pk()
    company: fields.ForeignKeyNullableRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="webhooks", null=True, on_delete=fields.CASCADE
    )
    company_id: UUID | None
    url = fields.CharField(max_length=2048)
    events: fields.JSONField[list[str]] = fields.JSONField()
    secret_sealed = fields.TextField()
    active = fields.BooleanField(default=True)
    created_by_id = fields.UUIDField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "webhook"


class WebhookDelivery(OrmModel):
    # One try of one event at one endpoint. All tries of an event share `message_id`
    # (the `webhook-id` header). A PENDING row is due at `next_attempt_at`; a worker
    # claims it by setting `lease_until`, so a worker that dies mid-try leaves a row
    # the sweep hands out again once the lease ran out.
    id = fields.BigIntField(primary_key=True)
    webhook: fields.ForeignKeyRelation[Webhook] = fields.ForeignKeyField(
        "models.Webhook", related_name="deliveries", on_delete=fields.CASCADE
    )
    webhook_id: UUID
    message_id = fields.CharField(max_length=64, db_index=True)
    event = fields.CharField(max_length=64)
    body = fields.TextField()  # the thin JSON body: ids and statuses only
    attempt = fields.IntField(default=1)
    status = fields.CharField(max_length=16, default="PENDING")
    response_code = fields.IntField(null=True)
    error = fields.CharField(max_length=32, null=True)
    next_attempt_at = fields.DatetimeField(null=True)
    lease_until = fields.DatetimeField(null=True)
    at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "webhook_delivery"
        indexes = (("status", "next_attempt_at"),)


class NoticeOptOut(OrmModel):
    # A user who turned off e-mail notices about orders (a row only for those).
    user: fields.OneToOneRelation[User] = fields.OneToOneField(
        "models.User", related_name="notice_opt_out", primary_key=True, on_delete=fields.CASCADE
    )
    user_id: UUID
    at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "notice_opt_out"
