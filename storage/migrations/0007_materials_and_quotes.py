from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0006_webhooks_and_notices')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Material',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=32)),
                ('active', fields.BooleanField(default=True)),
                ('spec', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'material', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ProviderMaterial',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('company', fields.ForeignKeyField('models.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='offered', on_delete=OnDelete.CASCADE)),
                ('material', fields.ForeignKeyField('models.Material', source_field='material_id', db_constraint=True, to_field='id', related_name='offered_by', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'provider_material', 'app': 'models', 'unique_together': (('company', 'material'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Quote',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('model', fields.ForeignKeyField('models.Model3D', source_field='model_id', db_constraint=True, to_field='id', related_name='quotes', on_delete=OnDelete.CASCADE)),
                ('company', fields.ForeignKeyField('models.Company', source_field='company_id', db_constraint=True, to_field='id', related_name='quotes', on_delete=OnDelete.RESTRICT)),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name='quotes', on_delete=OnDelete.SET_NULL)),
                ('material_code', fields.CharField(max_length=32)),
                ('snapshot', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'quote', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='ModelMetadata',
            name='hull_sealed',
            field=fields.BinaryField(null=True),
        ),
        ops.AddField(
            model_name='ModelMetadata',
            name='walls_sealed',
            field=fields.BinaryField(null=True),
        ),
        ops.AddField(
            model_name='Order',
            name='currency',
            field=fields.CharField(null=True, max_length=3),
        ),
        ops.AddField(
            model_name='Order',
            name='price',
            field=fields.DecimalField(null=True, max_digits=14, decimal_places=2),
        ),
        ops.AddField(
            model_name='Order',
            name='quote',
            field=fields.ForeignKeyField('models.Quote', source_field='quote_id', null=True, db_constraint=True, to_field='id', related_name='orders', on_delete=OnDelete.SET_NULL),
        ),
    ]
