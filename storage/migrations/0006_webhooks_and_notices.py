from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    dependencies = [('models', '0005_page_indexes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Webhook',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('models.Company', source_field='company_id', null=True, db_constraint=True, to_field='id', related_name='webhooks', on_delete=OnDelete.CASCADE)),
                ('url', fields.CharField(max_length=2048)),
                ('events', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('secret_sealed', fields.TextField(unique=False)),
                ('active', fields.BooleanField(default=True)),
                ('created_by_id', fields.UUIDField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'webhook', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('webhook', fields.ForeignKeyField('models.Webhook', source_field='webhook_id', db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.CASCADE)),
                ('message_id', fields.CharField(db_index=True, max_length=64)),
                ('event', fields.CharField(max_length=64)),
                ('body', fields.TextField(unique=False)),
                ('attempt', fields.IntField(default=1)),
                ('status', fields.CharField(default='PENDING', max_length=16)),
                ('response_code', fields.IntField(null=True)),
                ('error', fields.CharField(null=True, max_length=32)),
                ('next_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('lease_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'webhook_delivery', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddIndex(
            model_name='WebhookDelivery',
            index=Index(fields=['status', 'next_attempt_at']),
        ),
        ops.CreateModel(
            name='NoticeOptOut',
            fields=[
                ('user', fields.OneToOneField('models.User', source_field='user_id', primary_key=True, db_index=True, db_constraint=True, to_field='id', related_name='notice_opt_out', on_delete=OnDelete.CASCADE)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'notice_opt_out', 'app': 'models', 'pk_attr': 'user_id'},
            bases=['Model'],
        ),
    ]
