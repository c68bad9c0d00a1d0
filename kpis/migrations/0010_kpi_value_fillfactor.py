"""Leave a fifth of each page of the published KPI values free (PostgreSQL), so that a run that
changes a value updates its row in place without writing an index entry (a "HOT" update).

Pages already written keep no room until they are rewritten (a first publication into an empty
table, or VACUUM FULL); SQLite has no such setting."""

from django.db import migrations

TABLE, FILLFACTOR = "kpis_kpivalue", 80


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} SET (fillfactor = {FILLFACTOR})")


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("kpis", "0009_log_target_changes")]

    operations = [migrations.RunPython(forward, backward)]
