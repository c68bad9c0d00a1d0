"""Publication: the staged set (kx_pub) against the published KpiValue rows."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.backends.utils import CursorWrapper

from kpis.engine.reconciliation import reconciliation_items_replaced
from kpis.metrics import Grain
from kpis.models import KpiValue, ReconciliationItem
from prm.bulk import indexes_built_after
from program.attribution import AttributionModel


def published_periods(alias: str) -> str:
    """The condition on published rows (KpiValue `alias`) of an incremental run's kx_pubper periods."""
    return f"EXISTS (SELECT 1 FROM kx_pubper pp WHERE pp.grain = {alias}.grain AND pp.label = {alias}.period)"


def published_cells(attribution_model: str) -> str:
    """The published rows of a patched-cells run's kx_pubcell cells, as a parenthesised slice
    (each scope looked up through its own index on KpiValue; "join_source_id IS NOT NULL" spelled
    out lets a scan of the join-source index skip the partner rows' NULLs)."""
    value_table, model = KpiValue._meta.db_table, AttributionModel(attribution_model).value
    on_cell = "k0.grain = c.grain AND k0.period_start = c.start_d"
    return f"""(SELECT k0.* FROM kx_pubcell c JOIN {value_table} k0 ON k0.partner_id = c.sid AND {on_cell}
        WHERE c.scope = 'partner' AND k0.scope = 'partner'
        UNION ALL SELECT k0.* FROM kx_pubcell c
        JOIN {value_table} k0 ON k0.join_source_id = c.sid AND {on_cell}
        WHERE c.scope = 'join_source' AND k0.scope = 'join_source' AND k0.join_source_id IS NOT NULL
        UNION ALL SELECT k0.* FROM kx_pubcell c JOIN {value_table} k0
        ON k0.attribution_model = '{model}' AND k0.scope = 'program' AND {on_cell}
        WHERE c.scope = 'program')"""


def published_columns() -> list[str]:
    return [
        "scope",
        "scope_key",
        "partner_id",
        "join_source_id",
        "grain",
        "period",
        "period_start",
        "metric",
        "target_metric",
        "attribution_model",
        "value",
    ]


PUBLISHED_COLUMNS = ", ".join(published_columns())


# KpiValue's unique key (kpi_value_unique): one published value per key.
PUBLISHED_KEY = ("attribution_model", "scope", "scope_key", "grain", "period", "metric", "target_metric")


# What the diff keeps of a published row to remove or update (kx_del): its id and key.
VANISHED_KEY = ("id",) + PUBLISHED_KEY


VANISHED_COLUMNS = ", ".join(VANISHED_KEY)


def same_key(a: str, b: str) -> str:
    """The condition that published or staged rows `a` and `b` have the same key."""
    return " AND ".join(f"{a}.{column} = {b}.{column}" for column in PUBLISHED_KEY)


def grouped_diff(*, staged: str, published: str) -> str:
    """The keys whose rows differ between the staged set and the published rows (`published`: a
    table or a parenthesised slice), grouped in one pass over both sides: the key, the published
    row's id, whether each side has the key (`published`, `staged`: 0 or 1), and the staged row's
    value, partner, join source and period start. A key on both sides is listed when its value,
    partner or join source differ."""
    pg = connection.vendor == "postgresql"

    def side(n: int, column: str) -> str:
        return f"MAX(CASE WHEN side = {n} THEN {column} END)"

    def same(column: str) -> str:
        a, b = side(0, column), side(1, column)
        return f"{a} IS NOT DISTINCT FROM {b}" if pg else f"{a} IS {b}"

    key = ", ".join(PUBLISHED_KEY)
    return f"""SELECT {key}, MAX(id) AS id, SUM(side) AS staged, COUNT(*) - SUM(side) AS published,
               {side(1, "value")} AS value, {side(1, "partner_id")} AS partner_id,
               {side(1, "join_source_id")} AS join_source_id, {side(1, "period_start")} AS period_start
        FROM (SELECT 0 AS side, k.id, {PUBLISHED_COLUMNS} FROM {published} k
              UNION ALL SELECT 1, NULL, {PUBLISHED_COLUMNS} FROM {staged}) u
        GROUP BY {key}
        HAVING COUNT(*) = 1 OR NOT ({same("value")} AND {same("partner_id")} AND {same("join_source_id")})"""


def staged_rows(*, grain: str | None = None) -> list[tuple[Any, ...]]:
    """Rows of kx_pub in the current connection (after KpiComputation.run), export column order."""
    where = f"WHERE grain = '{Grain(grain)}'" if grain else ""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT scope, scope_key, period, metric, target_metric, value FROM kx_pub "
            f"{where} ORDER BY scope, scope_key, period_start, metric, target_metric"
        )
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


# A publication that changes at least this many rows, and this share of the table's rows as the
# planner last counted them, refreshes PostgreSQL's planner statistics.
ANALYZE_AFTER_CHANGED_ROWS = 10_000
ANALYZE_AFTER_CHANGED_SHARE = 0.1


def stage_changes(*, diffed: bool, on_base: bool, cells_of_model: str | None) -> int:
    """Before the publishing transaction (so its lock is held briefly): the differences between the
    staged set and the published rows, as rows to remove (kx_del), add (kx_ins) and update in
    place (kx_upd); returns how many periods they touch.

    `diffed`: a chunked run's chunks filled the shared kx_del and kx_ins for their own scopes; only
    the published rows outside every chunk (a deleted partner's) are added here, and
    `pair_chunk_differences` pairs them into updates inside the transaction. `on_base`: an
    incremental run that recomputed some periods, compared with the published rows of those only.
    `cells_of_model`: a patched-cells run, compared with the published rows of its cells only.
    """
    value_table = KpiValue._meta.db_table
    with connection.cursor() as cursor:
        if diffed:
            # Chunk -1: these rows, replaced when a publication is tried again.
            cursor.execute("DELETE FROM kx_del WHERE chunk = -1")
        if diffed and not on_base:
            # (On a base, nothing has written the set since it held no such row: a partner or join
            # source deleted since would have taken its rows along, a write the base check sees.
            # The scan of every published row costs 0.3 s at 1M deals.)
            cursor.execute(
                f"""INSERT INTO kx_del ({VANISHED_COLUMNS}, chunk)
                SELECT {", ".join(f"k.{column}" for column in VANISHED_KEY)}, -1
                FROM {value_table} k
                WHERE NOT (k.scope = 'program'
                           OR (k.scope = 'join_source' AND k.join_source_id IN (SELECT id FROM kx_js))
                           OR (k.scope = 'partner' AND k.partner_id IN (SELECT id FROM kx_partner)))"""
            )
        if not diffed:
            _stage_diff(cursor, restricted=on_base, cells_of_model=cells_of_model)
        updated_periods = "" if diffed else " UNION SELECT grain, period FROM kx_upd"
        cursor.execute(
            "SELECT COUNT(*) FROM (SELECT grain, period FROM kx_del "
            f"UNION SELECT grain, period FROM kx_ins{updated_periods}) p"
        )
        (changed_periods,) = cursor.fetchone()
        return int(changed_periods)


def write_changes(run_id: int, *, cells_of_model: str | None) -> dict[str, int]:
    """Inside the publishing transaction: delete the vanished rows, update the changed ones in
    place, insert the new ones (each labelled with `run_id`), and replace the reconciliation items
    (`cells_of_model`: a patched-cells run's, only those of its affected keys). Returns how many
    rows were inserted, updated and deleted.

    A statement that writes no row is not run: it still counts as a write of the published set
    (its triggers give it a new version, so caches would start over after every no-op run)."""
    value_table, run = KpiValue._meta.db_table, int(run_id)
    pg = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM kx_del), EXISTS (SELECT 1 FROM kx_ins), "
            "EXISTS (SELECT 1 FROM kx_upd)"
        )
        to_delete, to_insert, to_update = cursor.fetchone()
        if pg:
            # Durability of this commit may lag a few ms; a crash then reruns the nightly job.
            cursor.execute("SET LOCAL synchronous_commit = off")
        deleted = inserted = updated = 0
        if to_delete:
            cursor.execute(f"DELETE FROM {value_table} WHERE id IN (SELECT id FROM kx_del)")
            deleted = cursor.rowcount
        if to_update:
            updated = _update_in_place(cursor, run)
        if to_insert:
            # A first publication (into an empty set): KpiValue's indexes built after the insert.
            with indexes_built_after(value_table):
                cursor.execute(
                    f"INSERT INTO {value_table} ({PUBLISHED_COLUMNS}, run_id) "
                    f"SELECT {PUBLISHED_COLUMNS}, {run} FROM kx_ins"
                )
                inserted = cursor.rowcount
        recon = ReconciliationItem._meta.db_table
        if cells_of_model is not None:
            cursor.execute(f"DELETE FROM {recon} WHERE {reconciliation_items_replaced(recon)}")
        else:
            cursor.execute(f"DELETE FROM {recon}")
        cursor.execute(
            f"""INSERT INTO {recon} (kind, description, deal_id, partner_id, touch_id, account_id,
                                     registration_ids, run_id)
            SELECT kind, detail, deal_id, partner_id, touch_id, account_id, registration_ids, {run}
            FROM kx_recon"""
        )
    return {"inserted": max(inserted, 0), "updated": max(updated, 0), "deleted": max(deleted, 0)}


def _update_in_place(cursor: CursorWrapper, run: int) -> int:
    """Update the published rows in kx_upd (their value, partner, join source, period start and
    run); returns how many. An update that leaves the indexed columns alone is a "HOT" update on
    PostgreSQL (KpiValue's fillfactor leaves room in each page), which writes no index entry."""
    value_table = KpiValue._meta.db_table
    if connection.vendor == "postgresql":
        cursor.execute(
            f"""UPDATE {value_table} SET value = u.value, partner_id = u.partner_id,
                join_source_id = u.join_source_id, period_start = u.period_start, run_id = {run}
            FROM kx_upd u WHERE {value_table}.id = u.id"""
        )
    else:
        # Row values, not UPDATE ... FROM (SQLite 3.33): Django 5.2 runs on 3.31.
        cursor.execute("CREATE INDEX IF NOT EXISTS kx_upd_id ON kx_upd (id)")
        cursor.execute(
            f"""UPDATE {value_table}
            SET (value, partner_id, join_source_id, period_start, run_id) = (
                SELECT u.value, u.partner_id, u.join_source_id, u.period_start, {run}
                FROM kx_upd u WHERE u.id = {value_table}.id)
            WHERE id IN (SELECT id FROM kx_upd)"""
        )
    return int(cursor.rowcount)


def clean_up(*, diffed: bool, changed: int) -> None:
    """After the publishing transaction: drop the differences (a chunked run's shared ones stay
    with its schema), and refresh the planner's statistics of KpiValue after a large change
    (autovacuum analyses late; until then the planner may scan the whole KPI table for the API's
    and dashboards' reads: seen 4.8 s instead of 0.1 ms after a first publication)."""
    value_table = KpiValue._meta.db_table
    with connection.cursor() as cursor:
        if not diffed:
            for table in ("kx_del", "kx_ins"):
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute("DROP TABLE IF EXISTS kx_upd")
        if connection.vendor != "postgresql" or changed < ANALYZE_AFTER_CHANGED_ROWS:
            return
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = CAST(%s AS regclass)", [value_table])
        if changed >= ANALYZE_AFTER_CHANGED_SHARE * cursor.fetchone()[0]:
            cursor.execute(f"ANALYZE {value_table}")


def _stage_diff(cursor: CursorWrapper, *, restricted: bool, cells_of_model: str | None = None) -> None:
    """Temp kx_del, kx_ins and kx_upd of an unchunked run: the staged set against KpiValue
    (`restricted`: an incremental run's, against the published rows of the periods it recomputed;
    `cells_of_model`: a patched-cells run's, against the published rows of its cells).

    One grouping of both sides by key tells each published row with no staged row (kx_del), each
    staged row with no published one (kx_ins), and each key whose value, partner or join source
    differs (kx_upd, updated in place: see `_pair_updates`).
    """
    for table in ("kx_del", "kx_ins", "kx_upd", "kx_diff"):
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    pg = connection.vendor == "postgresql"
    if pg:
        # One in-memory hash aggregate.
        cursor.execute("SET work_mem = '256MB'")
    published = KpiValue._meta.db_table
    if cells_of_model is not None:
        cursor.execute("DROP TABLE IF EXISTS kx_pubslice")
        cursor.execute(f"CREATE TEMP TABLE kx_pubslice AS SELECT * FROM {published_cells(cells_of_model)} k")
        published = "kx_pubslice"
    elif restricted:
        published = f"(SELECT * FROM {published} k0 WHERE {published_periods('k0')})"

    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {published} k)")
    if cursor.fetchone()[0]:
        diff = grouped_diff(staged="kx_pub", published=published)
    else:
        # A first publication: every staged row, in its order (grouped rows come in hash order,
        # and inserting them so costs KpiValue's indexes far more).
        diff = (
            f"SELECT {', '.join(PUBLISHED_KEY)}, CAST(NULL AS BIGINT) AS id, 1 AS staged, 0 AS published, "
            "value, partner_id, join_source_id, period_start FROM kx_pub"
        )
    cursor.execute(f"CREATE TEMP TABLE kx_diff AS {diff}")
    cursor.execute(f"CREATE TEMP TABLE kx_del AS SELECT {VANISHED_COLUMNS} FROM kx_diff WHERE staged = 0")
    cursor.execute(f"CREATE TEMP TABLE kx_ins AS SELECT {PUBLISHED_COLUMNS} FROM kx_diff WHERE published = 0")
    cursor.execute(
        f"CREATE TEMP TABLE kx_upd AS SELECT {VANISHED_COLUMNS}, value, partner_id, join_source_id, "
        "period_start FROM kx_diff WHERE staged = 1 AND published = 1"
    )
    cursor.execute("DROP TABLE kx_diff")
    if pg:
        cursor.execute("RESET work_mem")


def pair_chunk_differences() -> None:
    """A chunked run's differences, in its publishing transaction (called inside it, so they are
    whole again if it fails): turn each published row to remove (kx_del) whose key is staged anew
    (kx_ins) into an update of that row in place (kx_upd), and leave only the rows to add in kx_ins
    and the rows to remove in kx_del.

    Both differences hold every key that changed value, partner or join source (a staged row with
    a published key would otherwise break KpiValue's unique key). An update that leaves the indexed
    columns alone writes no index entry when its page has room (KpiValue's fillfactor: a "HOT"
    update on PostgreSQL), where a delete and an insert write one per index.
    """
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS kx_upd")
        cursor.execute("SELECT EXISTS (SELECT 1 FROM kx_del) AND EXISTS (SELECT 1 FROM kx_ins)")
        (both,) = cursor.fetchone()
        if both and connection.vendor == "postgresql":
            # Sized for the planner: a hash join (a merge join sorts the text keys by collation).
            cursor.execute("ANALYZE kx_del, kx_ins")
        cursor.execute(
            f"""CREATE TEMP TABLE kx_upd AS
            SELECT {", ".join(f"d.{column}" for column in VANISHED_KEY)},
                   i.value, i.partner_id, i.join_source_id, i.period_start
            FROM kx_del d JOIN kx_ins i ON {same_key("d", "i")} WHERE {"1 = 1" if both else "1 = 0"}"""
        )
        if both:
            cursor.execute(
                f"DELETE FROM kx_ins WHERE EXISTS (SELECT 1 FROM kx_upd u WHERE {same_key('u', 'kx_ins')})"
            )
            cursor.execute("DELETE FROM kx_del WHERE id IN (SELECT id FROM kx_upd)")
