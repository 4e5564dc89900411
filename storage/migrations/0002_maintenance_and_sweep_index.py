from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MaintenanceRun',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('last_started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
            ],
            options={'table': 'maintenance_run', 'app': 'models', 'pk_attr': 'name'},
            bases=['Model'],
        ),
        ops.AddIndex(
            model_name='Model3D',
            index=Index(fields=['analysis_status', 'analysis_started_at']),
        ),
        ops.AlterModelOptions(
            name='ModelMetadata',
            options={'table': 'model_metadata', 'app': 'models', 'pk_attr': 'model_id'},
        ),
    ]
