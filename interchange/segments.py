"""Deal.segment through the bulk writes (PostgreSQL): the rule applied once per write, not per row.

The segment is kept by database triggers (deals/migrations/0005_deal_segment.py): a row trigger on
every deal written, and a statement trigger on every write of touches that recomputes their deals.
A bulk load pays for them dearly: the row trigger runs a PL/pgSQL call and a probe into the
touches for each of a million deals, and the touches' trigger probes the touches of each deal they
name while the bulk write has dropped the index it would probe with (staging.bulk_write), a scan of
the table per deal. So, as the seeder does (interchange.seeding), a bulk write turns the triggers of
its table off for the write, in the import's transaction, and sets the segments itself with the
same rule (`SEGMENT_SQL`, the triggers' own text):

- deals: the write computes each row's segment in the statement that writes it (the upsert's
  `derived` column, interchange.file_steps), from the values written and the stored deal's id;
- touches: after the write (its indexes back), the rule is evaluated once for each deal they name
  (`changes`) and one UPDATE writes the segments that differ (`apply`), as the touches' trigger
  would; staging.bulk_write rebuilds the deals' plain indexes around it when they are many.

The triggers are back on before the import's next file; the result equals theirs
(tests/test_import_segments.py).
"""

from importlib import import_module
from typing import Any

from django.db import connection

_rule = import_module("deals.migrations.0005_deal_segment")
SEGMENT_SQL: str = _rule.SEGMENT_SQL
# The segment triggers of each table (deals 0005; TRUNCATE, which no import does, stays on).
TRIGGERS: dict[str, tuple[str, ...]] = {
    "deals_deal": ("deals_deal_segment",),
    "deals_touch": ("deals_touch_segment_ins", "deals_touch_segment_upd", "deals_touch_segment_del"),
}
# The KPI change log's trigger on deal updates: it logs no update whose only change is the segment
# (deals 0005), after comparing each row; off while only segments are written.
DEAL_FACT_LOG = "deals_deal_fact_upd"


def segment_of(alias: str) -> str:
    """The segment of the deal row `alias` (its id, sourcing_partner_id and closed_at), by the rule."""
    return SEGMENT_SQL.format(d=alias)


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _enabled(cursor: Any, table: str, names: tuple[str, ...]) -> list[str]:
    cursor.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND tgenabled <> 'D' "
        "AND tgname = ANY(%s) ORDER BY tgname",
        [table, list(names)],
    )
    return [name for (name,) in cursor.fetchall()]


def triggers_off(cursor: Any, table: str, names: tuple[str, ...] | None = None) -> list[str]:
    """PostgreSQL: disable the segment triggers of `table` (or `names`) that are on; returns them,
    for `triggers_on`."""
    names = TRIGGERS.get(table, ()) if names is None else names
    disabled = _enabled(cursor, table, names) if names else []
    for name in disabled:
        cursor.execute(f"ALTER TABLE {_quote(table)} DISABLE TRIGGER {_quote(name)}")
    return disabled


def triggers_on(cursor: Any, table: str, names: list[str]) -> None:
    for name in names:
        cursor.execute(f"ALTER TABLE {_quote(table)} ENABLE TRIGGER {_quote(name)}")


CHANGES = "imp_segments"


def changes(cursor: Any, deals: str, params: list[Any] | None = None) -> int:
    """PostgreSQL: CHANGES, the deals `deals` selects (a condition on the deal row `d`) whose segment
    the rule gives otherwise than stored, with the rule's segment; returns how many (`apply` writes
    them). The rule is evaluated once per deal, before any is written."""
    segment = segment_of("d")
    cursor.execute(f"DROP TABLE IF EXISTS {CHANGES}")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {CHANGES} AS SELECT d.id, n.segment FROM deals_deal d "
        # OFFSET 0: the rule evaluated once per deal, not once in the filter and again in the list.
        f"CROSS JOIN LATERAL (SELECT {segment} AS segment OFFSET 0) n "
        f"WHERE ({deals}) AND d.segment IS DISTINCT FROM n.segment",
        params or [],
    )
    changed = cursor.rowcount
    if not changed:  # nothing for `apply` to write: the table does not outlive the call
        cursor.execute(f"DROP TABLE {CHANGES}")
    return changed


def apply(cursor: Any) -> None:
    """Write the segments `changes` found. The deal's own segment trigger (it would compute each
    again) and the change log's trigger (it logs no segment-only update) are off during it."""
    table = "deals_deal"
    disabled = triggers_off(cursor, table, (*TRIGGERS[table], DEAL_FACT_LOG))
    cursor.execute(f"UPDATE {table} d SET segment = c.segment FROM {CHANGES} c WHERE d.id = c.id")
    triggers_on(cursor, table, disabled)
    cursor.execute(f"DROP TABLE {CHANGES}")
