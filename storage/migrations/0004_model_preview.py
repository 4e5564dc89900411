from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.fields.base import OnDelete

class Migration(migrations.Migration):
    dependencies = [('models', '0003_accounts')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ModelPreview',
            fields=[
                ('model', fields.OneToOneField('models.Model3D', source_field='model_id', primary_key=True, db_index=True, db_constraint=True, to_field='id', related_name='preview', on_delete=OnDelete.CASCADE)),
                ('glb_key', fields.CharField(null=True, unique=True, max_length=200)),
                ('png_key', fields.CharField(null=True, unique=True, max_length=200)),
                ('glb_size', fields.BigIntField(default=0)),
                ('png_size', fields.BigIntField(default=0)),
                ('triangles', fields.BigIntField(default=0)),
                ('reason', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'model_preview', 'app': 'models', 'pk_attr': 'model_id'},
            bases=['Model'],
        ),
        ops.AlterModelOptions(
            name='ModelPreview',
            options={'table': 'model_preview', 'app': 'models', 'pk_attr': 'model_id'},
        ),
    ]
