"""KpiValue.run keeps no database constraint on PostgreSQL: checking it for every written row at
commit cost a publication of 18,000 changed values 0.14 s. Django still protects the runs that
values point at (on_delete=PROTECT), and the publishing run's own row is updated in the same
transaction.

On SQLite the constraint stays: altering it there rebuilds the table, which would drop its raw-SQL
triggers (0005), and its check costs little on the programs SQLite serves."""

import django.db.models.deletion
from django.db import migrations, models

TABLE = "kpis_kpivalue"
# The name Django gave it in 0001, for the way back.
CONSTRAINT = "kpis_kpivalue_run_id_7408df8a_fk_kpis_kpirun_id"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' "
            f"AND conrelid = CAST('{TABLE}' AS regclass) AND confrelid = CAST('kpis_kpirun' AS regclass)"
        )
        names = [row[0] for row in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f'SET CONSTRAINTS "{name}" IMMEDIATE')
        schema_editor.execute(f'ALTER TABLE {TABLE} DROP CONSTRAINT "{name}"')


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE {TABLE} ADD CONSTRAINT {CONSTRAINT} FOREIGN KEY (run_id) "
            "REFERENCES kpis_kpirun (id) DEFERRABLE INITIALLY DEFERRED"
        )


class Migration(migrations.Migration):
    dependencies = [("kpis", "0010_kpi_value_fillfactor")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="kpivalue",
                    name="run",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="values",
                        to="kpis.kpirun",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forward, backward)],
        ),
    ]
