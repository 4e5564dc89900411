from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Issue 14: pages walk these indexes by keyset (created_at, id), newest first."""

    dependencies = [('models', '0004_model_preview')]

    initial = False

    operations = [
        ops.AddIndex(model_name='Model3D', index=Index(fields=['company_id', 'created_at', 'id'])),
        ops.AddIndex(model_name='Model3D', index=Index(fields=['created_at', 'id'])),
        ops.AddIndex(model_name='Comment', index=Index(fields=['model_id', 'created_at', 'id'])),
        ops.AddIndex(model_name='Order', index=Index(fields=['company_id', 'created_at', 'id'])),
        ops.AddIndex(model_name='Order', index=Index(fields=['provider_id', 'created_at', 'id'])),
        ops.AddIndex(model_name='Order', index=Index(fields=['created_at', 'id'])),
    ]
