"""PostgreSQL: refuse UPDATE and DELETE on the audit trail's table, whoever runs them.

One UPDATE stays allowed: emptying `actor_id` and nothing else, which is what deleting a user does
(ON DELETE SET NULL); the entry keeps the actor's label and email. TRUNCATE is not refused: test
databases are flushed with it, and only a database owner can run it (docs/audit.md, retention).
SQLite has no trigger (its test flush deletes rows): there, as everywhere, the application never
updates or deletes an entry and the admin is read-only.
"""

from django.db import migrations

FUNCTION = "prm_audit_append_only"
TRIGGER = "prm_audit_append_only"


def _table(apps) -> str:
    return apps.get_model("auditlog", "LogEntry")._meta.db_table


def create_trigger(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(_table(apps))
    schema_editor.execute(
        f"""
        CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND OLD.actor_id IS NOT NULL AND NEW.actor_id IS NULL
               AND to_jsonb(NEW) - 'actor_id' = to_jsonb(OLD) - 'actor_id' THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'audit log entries are append-only: % refused', TG_OP;
        END
        $$;
        """,
        params=None,  # the body's % is PL/pgSQL's placeholder, not a query parameter
    )
    schema_editor.execute(
        f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()"
    )


def drop_trigger(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {schema_editor.quote_name(_table(apps))}")
    schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
