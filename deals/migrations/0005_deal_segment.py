"""Deal.segment (sourced, influenced, direct: docs/kpis.md, "Segments"), kept by the database.

The staff deal list filters by segment; computing it per deal (an EXISTS probe into the touches
of every candidate deal, and again for the paginator's count) took 3 s at 1M deals. Stored, it is
a plain indexed column. It must be right after every write, whoever writes: the services, the
API, the admin, the importer (also its COPY path), queryset updates, the seeder. So triggers
keep it, not the ORM:

- a deal's segment is recomputed whenever the deal is written (insert or update: its sourcing
  partner or closed_at may have changed; what Django wrote into the column is overwritten);
- a write of touches (insert, update, delete; PostgreSQL also TRUNCATE) recomputes the segments
  of their deals (old and new deal of an updated touch), writing only those that change.

PostgreSQL: a BEFORE row trigger on deals_deal sets NEW.segment; statement-level triggers with
transition tables on deals_touch (one UPDATE per statement, however many rows it wrote).
SQLite: row triggers (SQLite has no others); an AFTER trigger updates the row it fired for, only
when the value differs (so it never fires itself again).

The rule is the KPI engine's (kpis/engine/facts.py `deal_select`): sourced when the deal has a
sourcing partner; else influenced when some touch counts (the deal has no closed_at, or
touched_at <= closed_at); else direct. tests/test_deal_segment.py compares the two.

A segment is derived, not a KPI input: the KPI change log (kpis 0008) logs the write that
changed it (the touch, or the deal's own columns), so its trigger on deals_deal is replaced by one
that leaves out the rows whose only change is their segment (the touch triggers' updates).

Like the triggers of kpis 0008, a later migration that makes Django rebuild deals_deal or
deals_touch on SQLite drops these and must create them again (the tests fail until it does).
"""

from importlib import import_module

from django.db import migrations, models

fact_change_log = import_module("kpis.migrations.0008_fact_change_log")

SEGMENT_SQL = """CASE WHEN {d}.sourcing_partner_id IS NOT NULL THEN 'sourced'
    WHEN EXISTS (SELECT 1 FROM deals_touch t WHERE t.deal_id = {d}.id
                 AND ({d}.closed_at IS NULL OR t.touched_at <= {d}.closed_at)) THEN 'influenced'
    ELSE 'direct' END"""

PG_FUNCTIONS = [
    f"""
CREATE OR REPLACE FUNCTION deals_deal_set_segment() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    NEW.segment := {SEGMENT_SQL.format(d="NEW")};
    RETURN NEW;
END
$$
""",
    # Only deals a write can change are recomputed: an insert can only turn a direct deal
    # influenced, a delete an influenced deal direct; the BEFORE trigger above recomputes the
    # rows updated here.
    f"""
CREATE OR REPLACE FUNCTION deals_touch_set_segments() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE deals_deal SET segment = 'direct' WHERE segment = 'influenced';
    ELSIF TG_OP = 'INSERT' THEN
        UPDATE deals_deal d SET segment = 'influenced'
        WHERE d.id IN (SELECT deal_id FROM new_rows) AND d.segment = 'direct'
          AND ({SEGMENT_SQL.format(d="d")}) = 'influenced';
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE deals_deal d SET segment = 'direct'
        WHERE d.id IN (SELECT deal_id FROM old_rows) AND d.segment = 'influenced'
          AND ({SEGMENT_SQL.format(d="d")}) = 'direct';
    ELSE
        UPDATE deals_deal d SET segment = ({SEGMENT_SQL.format(d="d")})
        WHERE d.id IN (SELECT deal_id FROM new_rows UNION SELECT deal_id FROM old_rows)
          AND d.segment IS DISTINCT FROM ({SEGMENT_SQL.format(d="d")});
    END IF;
    RETURN NULL;
END
$$
""",
]

_TOUCHES = "FOR EACH STATEMENT EXECUTE FUNCTION deals_touch_set_segments()"
PG_TRIGGERS = [
    "CREATE TRIGGER deals_deal_segment BEFORE INSERT OR UPDATE ON deals_deal "
    "FOR EACH ROW EXECUTE FUNCTION deals_deal_set_segment()",
    f"CREATE TRIGGER deals_touch_segment_ins AFTER INSERT ON deals_touch REFERENCING NEW TABLE AS new_rows {_TOUCHES}",
    "CREATE TRIGGER deals_touch_segment_upd AFTER UPDATE ON deals_touch "
    f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows {_TOUCHES}",
    f"CREATE TRIGGER deals_touch_segment_del AFTER DELETE ON deals_touch REFERENCING OLD TABLE AS old_rows {_TOUCHES}",
    f"CREATE TRIGGER deals_touch_segment_trunc AFTER TRUNCATE ON deals_touch {_TOUCHES}",
]
PG_DROP = [
    "DROP TRIGGER IF EXISTS deals_deal_segment ON deals_deal",
    *[f"DROP TRIGGER IF EXISTS deals_touch_segment_{e} ON deals_touch" for e in ("ins", "upd", "del", "trunc")],
    "DROP FUNCTION IF EXISTS deals_deal_set_segment()",
    "DROP FUNCTION IF EXISTS deals_touch_set_segments()",
]


def _sqlite_recompute(where: str) -> str:
    segment = SEGMENT_SQL.format(d="deals_deal")
    return f"UPDATE deals_deal SET segment = {segment} WHERE {where} AND segment IS NOT {segment};"


SQLITE_TRIGGERS = [
    f"CREATE TRIGGER deals_deal_segment_ins AFTER INSERT ON deals_deal BEGIN {_sqlite_recompute('id = NEW.id')} END",
    f"CREATE TRIGGER deals_deal_segment_upd AFTER UPDATE ON deals_deal BEGIN {_sqlite_recompute('id = NEW.id')} END",
    "CREATE TRIGGER deals_touch_segment_ins AFTER INSERT ON deals_touch "
    f"BEGIN {_sqlite_recompute('id = NEW.deal_id')} END",
    "CREATE TRIGGER deals_touch_segment_upd AFTER UPDATE ON deals_touch "
    f"BEGIN {_sqlite_recompute('id IN (NEW.deal_id, OLD.deal_id)')} END",
    "CREATE TRIGGER deals_touch_segment_del AFTER DELETE ON deals_touch "
    f"BEGIN {_sqlite_recompute('id = OLD.deal_id')} END",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in (
        "deals_deal_segment_ins",
        "deals_deal_segment_upd",
        "deals_touch_segment_ins",
        "deals_touch_segment_upd",
        "deals_touch_segment_del",
    )
]


# kpis_log_fact_change('deal') for an UPDATE, less the rows whose only change is their segment.
PG_LOG_FUNCTION = """
CREATE OR REPLACE FUNCTION deals_log_deal_update() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    writer BIGINT := pg_current_xact_id()::text::bigint;
BEGIN
    INSERT INTO kpis_factchange (source, row_id, xid)
    SELECT 'deal', n.id, writer FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id
    WHERE o.id IS NULL OR o.segment IS NOT DISTINCT FROM n.segment
       OR to_jsonb(o) - 'segment' IS DISTINCT FROM to_jsonb(n) - 'segment';
    INSERT INTO kpis_factchange (source, row_id, xid)
    SELECT 'deal', o.id, writer FROM (SELECT id FROM old_rows EXCEPT SELECT id FROM new_rows) o;
    RETURN NULL;
END
$$
"""
PG_LOG_TRIGGER = (
    "CREATE TRIGGER deals_deal_fact_upd AFTER UPDATE ON deals_deal "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION deals_log_deal_update()"
)


def _original_log_trigger(pg: bool) -> str:
    make = fact_change_log._pg_triggers if pg else fact_change_log._sqlite_triggers
    args = ("deals_deal", "deal") if pg else ("deals_deal", "deal", None)
    return next(s for s in make(*args) if "deals_deal_fact_upd" in s)


def _sqlite_log_trigger(apps) -> str:
    # SQLite's row trigger gets a WHEN: the segment unchanged, or some other column changed
    # (the deal's columns as of this migration; a later column changed together with the
    # segment alone, never by save(), which writes them all, would go unlogged on SQLite).
    columns = [f.column for f in apps.get_model("deals", "Deal")._meta.concrete_fields if f.name != "segment"]
    when = " OR ".join(["OLD.segment IS NEW.segment", *[f"OLD.{c} IS NOT NEW.{c}" for c in columns]])
    original = _original_log_trigger(pg=False)
    head = "AFTER UPDATE ON deals_deal BEGIN"
    assert head in original
    return original.replace(head, f"AFTER UPDATE ON deals_deal WHEN {when} BEGIN")


def forward(apps, schema_editor):
    execute = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        for statement in [*PG_FUNCTIONS, *PG_TRIGGERS, PG_LOG_FUNCTION]:
            execute(statement)
        execute("DROP TRIGGER IF EXISTS deals_deal_fact_upd ON deals_deal")
        execute(PG_LOG_TRIGGER)
        # The backfill in one set-based statement, the row triggers off: they would compute every
        # segment a second time, and the KPI change log (kpis 0008) would log a million deals
        # whose KPI inputs did not change. The migration's lock on the table keeps writers out.
        execute("ALTER TABLE deals_deal DISABLE TRIGGER USER")
        execute(f"UPDATE deals_deal SET segment = {SEGMENT_SQL.format(d='deals_deal')}")
        execute("ALTER TABLE deals_deal ENABLE TRIGGER USER")
    else:
        for statement in SQLITE_TRIGGERS:
            execute(statement)
        execute("DROP TRIGGER IF EXISTS deals_deal_fact_upd")
        execute(_sqlite_log_trigger(apps))
        execute(f"UPDATE deals_deal SET segment = {SEGMENT_SQL.format(d='deals_deal')}")


def analyze(apps, schema_editor):
    # The backfill rewrote every row: the planner's statistics of the new column (and of the
    # indexes built on it) start from this, not from the next autovacuum.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ANALYZE deals_deal")


def backward(apps, schema_editor):
    pg = schema_editor.connection.vendor == "postgresql"
    for statement in PG_DROP if pg else SQLITE_DROP:
        schema_editor.execute(statement)
    schema_editor.execute("DROP TRIGGER IF EXISTS deals_deal_fact_upd" + (" ON deals_deal" if pg else ""))
    schema_editor.execute(_original_log_trigger(pg))
    if pg:
        schema_editor.execute("DROP FUNCTION IF EXISTS deals_log_deal_update()")


class Migration(migrations.Migration):
    dependencies = [
        ("deals", "0004_registration_expiry_warning_sent_at"),
        ("partners", "0004_onboarding"),
        ("kpis", "0008_fact_change_log"),  # its log trigger on deals_deal is replaced here
    ]

    operations = [
        # Nullable and without a default: SQLite adds the column in place (a rebuilt table would
        # lose the triggers of kpis 0008).
        migrations.AddField(
            model_name="deal",
            name="segment",
            field=models.CharField(blank=True, editable=False, max_length=10, null=True),
        ),
        migrations.RunPython(forward, backward),
        # After the backfill: built once over the final values.
        migrations.AddIndex(
            model_name="account",
            index=models.Index(fields=["name"], name="account_name"),
        ),
        migrations.AddIndex(
            model_name="deal",
            index=models.Index(fields=["segment", "status", "amount"], name="deal_segment_status_amount"),
        ),
        migrations.AddIndex(
            model_name="deal",
            index=models.Index(fields=["amount"], name="deal_amount"),
        ),
        migrations.AddIndex(
            model_name="deal",
            index=models.Index(fields=["closed_at"], name="deal_closed_at"),
        ),
        migrations.AddIndex(
            model_name="deal",
            index=models.Index(fields=["name"], name="deal_name"),
        ),
        migrations.RunPython(analyze, migrations.RunPython.noop),
    ]
