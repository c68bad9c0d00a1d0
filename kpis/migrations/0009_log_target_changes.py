"""Log writes of targets in the change log too (see 0008): a target changed by a queryset
`.update()` (which leaves `updated_at` alone) must not let the nightly run skip as unchanged."""

from importlib import import_module

from django.db import migrations, models

fact_change_log = import_module("kpis.migrations.0008_fact_change_log")

TABLE, SOURCE = "kpis_target", "target"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        statements = fact_change_log._pg_triggers(TABLE, SOURCE)
    else:
        statements = fact_change_log._sqlite_triggers(TABLE, SOURCE, None)
    for statement in statements:
        schema_editor.execute(statement)


def backward(apps, schema_editor):
    pg = schema_editor.connection.vendor == "postgresql"
    for event in ("ins", "upd", "del", "trunc"):
        if pg:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_fact_{event} ON {TABLE}")
        elif event != "trunc":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_fact_{event}")


class Migration(migrations.Migration):
    dependencies = [("kpis", "0008_fact_change_log")]

    operations = [
        migrations.AlterField(
            model_name="factchange",
            name="source",
            field=models.CharField(
                choices=[
                    ("deal", "Deal"),
                    ("touch", "Touch"),
                    ("registration", "Registration"),
                    ("partner", "Partner"),
                    ("cost", "Cost"),
                    ("target", "Target"),
                    ("truncate", "Truncate"),
                ],
                max_length=16,
            ),
        ),
        migrations.RunPython(forward, backward),
    ]
