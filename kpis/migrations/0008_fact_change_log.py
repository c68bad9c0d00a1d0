"""The change log of the KPI input tables (FactChange), filled by triggers on every write, and
KpiRun.changed_rows (how many of its rows an incremental run patched its facts with).

PostgreSQL: statement-level triggers with transition tables (one INSERT per statement however many
rows it writes) that also log TRUNCATE; SQLite: row triggers (SQLite has no others, and no
TRUNCATE). Like the triggers of 0005/0006, a later migration that makes Django rebuild one of these
tables on SQLite drops them and must create them again (tests/test_kpi_delta.py fails until it does).
"""

from django.db import migrations, models

# (table, source, the column logged as related_id or None)
LOGGED_TABLES = [
    ("deals_deal", "deal", None),
    ("deals_touch", "touch", "deal_id"),
    ("deals_dealregistration", "registration", None),
    ("partners_partner", "partner", None),
    ("kpis_costentry", "cost", None),
]

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION kpis_log_fact_change() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    writer BIGINT := pg_current_xact_id()::text::bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO kpis_factchange (source, row_id, xid) VALUES ('truncate', 0, writer);
    ELSIF TG_ARGV[0] = 'touch' THEN
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO kpis_factchange (source, row_id, related_id, xid)
            SELECT 'touch', id, deal_id, writer FROM new_rows;
        END IF;
        IF TG_OP <> 'INSERT' THEN
            INSERT INTO kpis_factchange (source, row_id, related_id, xid)
            SELECT 'touch', id, deal_id, writer FROM old_rows;
        END IF;
    ELSE
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO kpis_factchange (source, row_id, xid) SELECT TG_ARGV[0], id, writer FROM new_rows;
        END IF;
        IF TG_OP = 'DELETE' THEN
            INSERT INTO kpis_factchange (source, row_id, xid) SELECT TG_ARGV[0], id, writer FROM old_rows;
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO kpis_factchange (source, row_id, xid)
            SELECT TG_ARGV[0], o.id, writer FROM (SELECT id FROM old_rows EXCEPT SELECT id FROM new_rows) o;
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""


def _pg_triggers(table: str, source: str) -> list[str]:
    run = f"FOR EACH STATEMENT EXECUTE FUNCTION kpis_log_fact_change('{source}')"
    return [
        f"CREATE TRIGGER {table}_fact_ins AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows {run}",
        f"CREATE TRIGGER {table}_fact_upd AFTER UPDATE ON {table} "
        f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows {run}",
        f"CREATE TRIGGER {table}_fact_del AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows {run}",
        f"CREATE TRIGGER {table}_fact_trunc AFTER TRUNCATE ON {table} {run}",
    ]


def _sqlite_triggers(table: str, source: str, related: str | None) -> list[str]:
    def log(row: str, *, when: str = "") -> str:
        related_id = f"{row}.{related}" if related else "NULL"
        return (
            "INSERT INTO kpis_factchange (source, row_id, related_id, xid) "
            f"SELECT '{source}', {row}.id, {related_id}, NULL{when};"
        )

    # An update logs the old row too when it matters: a touch's old deal, an id that changed.
    old_row = log("OLD") if related else log("OLD", when=" WHERE OLD.id <> NEW.id")
    return [
        f"CREATE TRIGGER {table}_fact_ins AFTER INSERT ON {table} BEGIN {log('NEW')} END",
        f"CREATE TRIGGER {table}_fact_upd AFTER UPDATE ON {table} BEGIN {log('NEW')} {old_row} END",
        f"CREATE TRIGGER {table}_fact_del AFTER DELETE ON {table} BEGIN {log('OLD')} END",
    ]


def forward(apps, schema_editor):
    execute = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        execute(PG_FUNCTION)
        for table, source, _ in LOGGED_TABLES:
            for statement in _pg_triggers(table, source):
                execute(statement)
    else:
        for table, source, related in LOGGED_TABLES:
            for statement in _sqlite_triggers(table, source, related):
                execute(statement)


def backward(apps, schema_editor):
    execute = schema_editor.execute
    pg = schema_editor.connection.vendor == "postgresql"
    for table, _, _ in LOGGED_TABLES:
        for event in ("ins", "upd", "del", "trunc"):
            if pg:
                execute(f"DROP TRIGGER IF EXISTS {table}_fact_{event} ON {table}")
            elif event != "trunc":
                execute(f"DROP TRIGGER IF EXISTS {table}_fact_{event}")
    if pg:
        execute("DROP FUNCTION IF EXISTS kpis_log_fact_change()")


class Migration(migrations.Migration):
    dependencies = [
        ("kpis", "0007_publication_state"),
        ("deals", "0003_touch_updated_at"),
        ("partners", "0003_names_not_blank"),
    ]

    operations = [
        migrations.CreateModel(
            name="FactChange",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                (
                    "source",
                    models.CharField(
                        choices=[
                            ("deal", "Deal"),
                            ("touch", "Touch"),
                            ("registration", "Registration"),
                            ("partner", "Partner"),
                            ("cost", "Cost"),
                            ("truncate", "Truncate"),
                        ],
                        max_length=16,
                    ),
                ),
                ("row_id", models.BigIntegerField()),
                ("related_id", models.BigIntegerField(blank=True, null=True)),
                ("xid", models.BigIntegerField(blank=True, null=True)),
            ],
        ),
        migrations.AddField(
            model_name="kpirun",
            name="changed_rows",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Changed input rows the run patched the previous run's facts with; null: built in full.",
                null=True,
            ),
        ),
        migrations.RunPython(forward, backward),
    ]
