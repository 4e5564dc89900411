from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from enum import StrEnum
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields


# Frozen copies of the enums as this migration created them: later changes to the
# live enums (domain/enums.py, domain/order_states.py) belong in a later migration.
def _frozen(name, *values):
    return StrEnum(name, [(value, value) for value in values])


Role = _frozen("Role", "CUSTOMER", "PROVIDER", "STAFF")
CompanyKind = _frozen("CompanyKind", "CUSTOMER", "PRINT_SERVICE")
AnalysisStatus = _frozen("AnalysisStatus", "PENDING", "RUNNING", "DONE", "FAILED")
OrderStatus = _frozen(
    "OrderStatus",
    "REQUESTED", "ASSIGNED", "ACCEPTED", "DECLINED", "IN_PRODUCTION", "SHIPPED", "DELIVERED",
    "CANCELLED",
)


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
                ('kind', fields.CharField(db_index=True, max_length=64)),
                ('actor_id', fields.UUIDField(null=True, db_index=True)),
                ('company_id', fields.UUIDField(null=True)),
                ('model_id', fields.UUIDField(null=True, db_index=True)),
                ('order_id', fields.UUIDField(null=True)),
                ('ip', fields.CharField(null=True, max_length=45)),
                ('detail', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'audit_event', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Company',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=200)),
                ('kind', fields.CharEnumField(description='CUSTOMER: CUSTOMER\nPRINT_SERVICE: PRINT_SERVICE', enum_type=CompanyKind, max_length=16)),
                ('address', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'company', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('email', fields.CharField(unique=True, max_length=254)),
                ('first_name', fields.CharField(max_length=100)),
                ('last_name', fields.CharField(max_length=100)),
                ('phone', fields.CharField(null=True, max_length=40)),
                ('address', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('role', fields.CharEnumField(description='CUSTOMER: CUSTOMER\nPROVIDER: PROVIDER\nSTAFF: STAFF', enum_type=Role, max_length=16)),
                ('company', fields.ForeignKeyField('models.Company', source_field='company_id', null=True, db_constraint=True, to_field='id', related_name='members', on_delete=OnDelete.RESTRICT)),
                ('is_company_admin', fields.BooleanField(default=False)),
                ('password_hash', fields.CharField(max_length=255)),
                ('mfa_enabled', fields.BooleanField(default=False)),
                ('totp_secret_sealed', fields.TextField(null=True, unique=False)),
                ('totp_pending_sealed', fields.TextField(null=True, unique=False)),
                ('totp_last_step', fields.BigIntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('signup_ip', fields.CharField(null=True, max_length=45)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'app_user', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApiToken',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=100)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='api_tokens', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'api_token', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Invitation',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('email', fields.CharField(max_length=254)),
                ('role', fields.CharEnumField(description='CUSTOMER: CUSTOMER\nPROVIDER: PROVIDER\nSTAFF: STAFF', enum_type=Role, max_length=16)),
                ('company', fields.ForeignKeyField('models.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='invitations', on_delete=OnDelete.CASCADE)),
                ('invited_by', fields.ForeignKeyField('models.User', source_field='invited_by_id', null=True, db_constraint=True, to_field='id', related_name='invitations_sent', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('accepted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'invitation', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Model3D',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('models.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='models', on_delete=OnDelete.RESTRICT)),
                ('owner', fields.ForeignKeyField('models.User', source_field='owner_id', null=True, db_constraint=True, to_field='id', related_name='models', on_delete=OnDelete.SET_NULL)),
                ('name', fields.CharField(max_length=200)),
                ('file_name', fields.CharField(max_length=255)),
                ('file_size', fields.BigIntField(default=0)),
                ('format', fields.CharField(max_length=16)),
                ('object_key', fields.CharField(unique=True, max_length=200)),
                ('wrapped_key', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('upload_ip', fields.CharField(null=True, max_length=45)),
                ('analysis_status', fields.CharEnumField(description='PENDING: PENDING\nRUNNING: RUNNING\nDONE: DONE\nFAILED: FAILED', enum_type=AnalysisStatus, max_length=16)),
                ('analysis_error', fields.TextField(null=True, unique=False)),
                ('analysis_attempts', fields.IntField(default=0)),
                ('analysis_started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'model3d', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Comment',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('model', fields.ForeignKeyField('models.Model3D', source_field='model_id', db_constraint=True, to_field='id', related_name='comments', on_delete=OnDelete.CASCADE)),
                ('author', fields.ForeignKeyField('models.User', source_field='author_id', null=True, db_constraint=True, to_field='id', related_name='comments', on_delete=OnDelete.SET_NULL)),
                ('body', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('ip', fields.CharField(null=True, max_length=45)),
            ],
            options={'table': 'comment', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ModelMetadata',
            fields=[
                ('model', fields.OneToOneField('models.Model3D', source_field='model_id', primary_key=True, db_index=True, db_constraint=True, to_field='id', related_name='metadata', on_delete=OnDelete.CASCADE)),
                ('file_name', fields.CharField(max_length=255)),
                ('file_size', fields.BigIntField()),
                ('format', fields.CharField(max_length=16)),
                ('size_x', fields.FloatField()),
                ('size_y', fields.FloatField()),
                ('size_z', fields.FloatField()),
                ('volume', fields.FloatField()),
                ('surface_area', fields.FloatField()),
                ('triangle_count', fields.BigIntField()),
                ('body_count', fields.IntField()),
                ('is_watertight', fields.BooleanField()),
                ('printable', fields.BooleanField()),
                ('issues', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('analysed_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'model_metadata', 'app': 'models', 'pk_attr': 'model_id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Order',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('model', fields.ForeignKeyField('models.Model3D', source_field='model_id', null=True, db_constraint=True, to_field='id', related_name='orders', on_delete=OnDelete.SET_NULL)),
                ('customer', fields.ForeignKeyField('models.User', source_field='customer_id', null=True, db_constraint=True, to_field='id', related_name='orders', on_delete=OnDelete.SET_NULL)),
                ('company', fields.ForeignKeyField('models.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='orders', on_delete=OnDelete.RESTRICT)),
                ('provider', fields.ForeignKeyField('models.Company', source_field='provider_id', null=True, db_constraint=True, to_field='id', related_name='assigned_orders', on_delete=OnDelete.RESTRICT)),
                ('status', fields.CharEnumField(description='REQUESTED: REQUESTED\nASSIGNED: ASSIGNED\nACCEPTED: ACCEPTED\nDECLINED: DECLINED\nIN_PRODUCTION: IN_PRODUCTION\nSHIPPED: SHIPPED\nDELIVERED: DELIVERED\nCANCELLED: CANCELLED', enum_type=OrderStatus, max_length=16)),
                ('quantity', fields.IntField()),
                ('material', fields.CharField(max_length=64)),
                ('shipping_address', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('billing_address', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('billing_info', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('ip', fields.CharField(null=True, max_length=45)),
                ('version', fields.IntField(default=1)),
            ],
            options={'table': 'print_order', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OrderEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('order', fields.ForeignKeyField('models.Order', source_field='order_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(description='REQUESTED: REQUESTED\nASSIGNED: ASSIGNED\nACCEPTED: ACCEPTED\nDECLINED: DECLINED\nIN_PRODUCTION: IN_PRODUCTION\nSHIPPED: SHIPPED\nDELIVERED: DELIVERED\nCANCELLED: CANCELLED', enum_type=OrderStatus, max_length=16)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('by', fields.ForeignKeyField('models.User', source_field='by_id', null=True, db_constraint=True, to_field='id', related_name='order_events', on_delete=OnDelete.SET_NULL)),
                ('note', fields.TextField(null=True, unique=False)),
                ('ip', fields.CharField(null=True, max_length=45)),
            ],
            options={'table': 'order_event', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RecoveryCode',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='recovery_codes', on_delete=OnDelete.CASCADE)),
                ('code_hash', fields.CharField(unique=True, max_length=64)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'recovery_code', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Session',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('ip', fields.CharField(null=True, max_length=45)),
            ],
            options={'table': 'session', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
