"""The publication version follows exactly what the published-KPI reads return: KpiValue rows and
the program settings (now including their deletion), not the reconciliation items, which every
publication rewrites. The PostgreSQL function runs with the search_path of this migration, so a
writer with another search_path (a data-only pg_restore, a chunked KPI run) still finds its table."""

from django.db import migrations

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION kpis_publication_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE kpis_kpipublication
    SET version = md5(random()::text || clock_timestamp()::text), changed_at = now()
    WHERE id = 1;
    RETURN NULL;
END
$$
"""
PG_FUNCTION_0005 = """
CREATE OR REPLACE FUNCTION kpis_publication_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE kpis_kpipublication
    SET version = md5(random()::text || clock_timestamp()::text), changed_at = now()
    WHERE id = 1;
    RETURN NULL;
END
$$
"""
SQLITE_BUMP = (
    "UPDATE kpis_kpipublication SET version = lower(hex(randomblob(16))), "
    "changed_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = 1"
)
RECON = "kpis_reconciliationitem"
SETTINGS = "kpis_programsettings"


def _pg_trigger(table: str, events: str) -> str:
    return (
        f"CREATE TRIGGER {table}_publication AFTER {events} ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION kpis_publication_changed()"
    )


def _sqlite_trigger(table: str, event: str) -> str:
    return f"CREATE TRIGGER {table}_publication_{event.lower()} AFTER {event} ON {table} BEGIN {SQLITE_BUMP}; END"


def forward(apps, schema_editor):
    execute = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        execute(PG_FUNCTION)
        execute(f"DROP TRIGGER IF EXISTS {RECON}_publication ON {RECON}")
        execute(f"DROP TRIGGER IF EXISTS {SETTINGS}_publication ON {SETTINGS}")
        execute(_pg_trigger(SETTINGS, "INSERT OR UPDATE OR DELETE OR TRUNCATE"))
    else:
        for event in ("insert", "update", "delete"):
            execute(f"DROP TRIGGER IF EXISTS {RECON}_publication_{event}")
        execute(_sqlite_trigger(SETTINGS, "DELETE"))


def backward(apps, schema_editor):
    execute = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        execute(PG_FUNCTION_0005)
        execute(f"DROP TRIGGER IF EXISTS {SETTINGS}_publication ON {SETTINGS}")
        execute(_pg_trigger(SETTINGS, "INSERT OR UPDATE"))
        execute(_pg_trigger(RECON, "INSERT OR UPDATE OR DELETE OR TRUNCATE"))
    else:
        execute(f"DROP TRIGGER IF EXISTS {SETTINGS}_publication_delete")
        for event in ("INSERT", "UPDATE", "DELETE"):
            execute(_sqlite_trigger(RECON, event))


class Migration(migrations.Migration):
    dependencies = [("kpis", "0005_publication_version")]
    operations = [migrations.RunPython(forward, backward)]
