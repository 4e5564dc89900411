"""Issue 8: an analysis reports DONE before its wall-thickness check has run; the
checks still running are named here until the complete report replaces the row."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0008_sealed_personal_data")]

    initial = False

    operations = [
        ops.AddField(
            model_name="ModelMetadata",
            name="pending_checks",
            field=fields.CharField(max_length=64, default=""),
        ),
    ]
