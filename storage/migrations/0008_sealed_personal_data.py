"""Seal personal data (issue 10, finding 5): e-mail, names, phone, addresses, billing
information, comment bodies and IP addresses move into sealed columns, and
e-mails get a blind index for look-up and uniqueness.

Each column is added as `<name>_sealed`, filled from the plaintext column
(data migration, parameterised SQL, on SQLite and PostgreSQL), the plaintext
column is dropped and the sealed one renamed. The sealing format is versioned
(`pvf1`, storage/sealed_fields.py), so this migration may call it.
"""

import json
from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops
from tortoise.transactions import in_transaction

from storage.sealed_fields import associated_data, email_index, normalise_email, seal_text

# (model, table, column, json?, database-assigned id?)
COLUMNS = [
    ("Company", "company", "address", True, False),
    ("User", "app_user", "email", False, False),
    ("User", "app_user", "first_name", False, False),
    ("User", "app_user", "last_name", False, False),
    ("User", "app_user", "phone", False, False),
    ("User", "app_user", "address", True, False),
    ("User", "app_user", "signup_ip", False, False),
    ("Session", "session", "ip", False, True),
    ("Session", "session", "user_agent", False, True),
    ("Invitation", "invitation", "email", False, False),
    ("Model3D", "model3d", "upload_ip", False, False),
    ("Comment", "comment", "body", False, False),
    ("Comment", "comment", "ip", False, False),
    ("Order", "print_order", "shipping_address", True, False),
    ("Order", "print_order", "billing_address", True, False),
    ("Order", "print_order", "billing_info", False, False),
    ("Order", "print_order", "ip", False, False),
    ("OrderEvent", "order_event", "ip", False, True),
    ("AuditEvent", "audit_event", "ip", False, True),
]
NOT_NULL = {("User", "email"), ("User", "first_name"), ("User", "last_name"),
            ("Invitation", "email"), ("Comment", "body"),
            ("Order", "shipping_address"), ("Order", "billing_address")}
INDEXED = [("User", "app_user"), ("Invitation", "invitation")]


def _placeholders(client: Any, count: int) -> list[str]:
    if client.capabilities.dialect == "sqlite":
        return ["?"] * count
    return [f"${n}" for n in range(1, count + 1)]


async def _seal_rows(apps: Any, editor: Any) -> None:
    client = editor.client
    for _, table, column, is_json, generated_id in COLUMNS:
        _, rows = await client.execute_query(
            f'SELECT id, "{column}" AS value FROM "{table}" WHERE "{column}" IS NOT NULL'
        )
        first, second = _placeholders(client, 2)
        for row in rows:
            value = row["value"]
            if is_json:
                parsed = json.loads(value) if isinstance(value, str) else value
                value = json.dumps(parsed, separators=(",", ":"), sort_keys=True)
            elif column == "email":
                value = normalise_email(value)
            aad = associated_data(table, column, None if generated_id else row["id"])
            await client.execute_query(
                f'UPDATE "{table}" SET "{column}_sealed" = {first} WHERE id = {second}',
                [seal_text(str(value), aad), row["id"]],
            )
    for _, table in INDEXED:
        _, rows = await client.execute_query(f'SELECT id, email FROM "{table}"')
        first, second = _placeholders(client, 2)
        for row in rows:
            await client.execute_query(
                f'UPDATE "{table}" SET email_index = {first} WHERE id = {second}',
                [email_index(row["email"]), row["id"]],
            )


def _forward() -> list[Any]:
    steps: list[Any] = [
        ops.AddField(model_name=model, name=f"{column}_sealed", field=fields.TextField(null=True))
        for model, _, column, _, _ in COLUMNS
    ]
    steps += [
        ops.AddField(
            model_name=model, name="email_index", field=fields.CharField(max_length=64, null=True)
        )
        for model, _ in INDEXED
    ]
    steps.append(ops.RunPython(_seal_rows))
    steps += [ops.RemoveField(model_name=model, name=column) for model, _, column, _, _ in COLUMNS]
    steps += [
        ops.RenameField(model_name=model, old_name=f"{column}_sealed", new_name=column)
        for model, _, column, _, _ in COLUMNS
    ]
    steps += [
        ops.AlterField(model_name=model, name=column, field=fields.TextField())
        for model, column in sorted(NOT_NULL)
    ]
    steps += [
        ops.AlterField(
            model_name="User", name="email_index", field=fields.CharField(max_length=64, unique=True)
        ),
        ops.AlterField(
            model_name="Invitation",
            name="email_index",
            field=fields.CharField(max_length=64, db_index=True),
        ),
    ]
    return steps


class Migration(migrations.Migration):
    dependencies = [("models", "0007_materials_and_quotes")]

    initial = False
    # The transaction is opened in apply(): SQLite needs a pragma set before it.
    atomic = False

    operations = _forward()

    async def apply(self, state: Any, **kwargs: Any) -> Any:
        editor = kwargs.get("schema_editor")
        if editor is None or kwargs.get("collect_sql") or kwargs.get("dry_run"):
            return await super().apply(state, **kwargs)
        client = editor.client
        sqlite = client.capabilities.dialect == "sqlite"
        # SQLite drops a column by rebuilding the table; dropping the old copy of a
        # table others refer to fails while foreign keys are enforced, and the
        # pragma is ignored inside a transaction. The check below keeps the promise.
        if sqlite:
            await client.execute_script("PRAGMA foreign_keys=OFF")
        try:
            async with in_transaction(client.connection_name) as transaction:
                editor.client = transaction
                state = await super().apply(state, **kwargs)
                if sqlite:
                    _, broken = await transaction.execute_query("PRAGMA foreign_key_check")
                    if broken:
                        raise RuntimeError(f"foreign keys broken by 0005: {broken[:5]}")
        finally:
            editor.client = client
            if sqlite:
                await client.execute_script("PRAGMA foreign_keys=ON")
        return state
