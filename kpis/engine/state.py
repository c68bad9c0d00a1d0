"""A run's state: the facts a run keeps for the next incremental run, its namespace, the change log mark."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from django.db import OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper

from kpis.engine.context import RunContext
from kpis.engine.session import TRANSACTION_SETTINGS, SessionThread
from kpis.engine.tables import (
    CELL_NAMES,
    DELTA_INDEXES,
    DRILL_INDEXES,
    RUN_NAMESPACE_PREFIX,
    STATE_TABLES,
    delta_index,
    index_name,
    run_schema,
    state_table,
)
from kpis.models import FactChange

# The KPI code a state was computed with: after a release that changes a formula, the first
# incremental run recomputes every period.
_KPI_CODE = sorted(Path(__file__).parent.rglob("*.py")) + [
    Path(__file__).parent.parent / name for name in ("metrics.py", "periods.py")
]
CODE_VERSION = hashlib.sha256(b"".join(path.read_bytes() for path in _KPI_CODE)).hexdigest()[:32]


def state_exists(run_id: int) -> bool:
    """Whether the run's state is complete (PostgreSQL empties unlogged tables after a crash)."""
    sentinel = state_table(run_id, "kx_state")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [sentinel])
        else:
            cursor.execute(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = %s", [sentinel]
            )
        if not cursor.fetchone()[0]:
            return False
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {sentinel})")
        return bool(cursor.fetchone()[0])


def state_runs() -> set[int]:
    """The run ids that have a state namespace (complete or not) in the database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT substr(nspname, %s) FROM pg_namespace WHERE starts_with(nspname, %s)",
                [len(RUN_NAMESPACE_PREFIX) + 1, RUN_NAMESPACE_PREFIX],
            )
            suffixes = [row[0] for row in cursor.fetchall()]
        else:
            cursor.execute(
                "SELECT substr(name, %s) FROM sqlite_master "
                "WHERE type = 'table' AND substr(name, 1, %s) = %s",
                [len(RUN_NAMESPACE_PREFIX) + 1, len(RUN_NAMESPACE_PREFIX), RUN_NAMESPACE_PREFIX],
            )
            suffixes = [row[0].split("_", 1)[0] for row in cursor.fetchall()]
    return {int(suffix) for suffix in suffixes if suffix.isdigit()}


def prune_change_log(run_id: int) -> int:
    """Delete the change log rows a run's state includes (its facts read them): once that state
    describes the published set, no run needs them. Returns how many went."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT snap, change_id, own_xid FROM {state_table(run_id, 'kx_state')}")
        mark = cursor.fetchone()
        if mark is None:
            return 0
        change_log = FactChange._meta.db_table
        included = change_included(mark, alias=change_log)
        if connection.vendor == "postgresql":
            truncated = _truncate_change_log(cursor, included)
            if truncated is not None:
                return truncated
        cursor.execute(f"DELETE FROM {change_log} WHERE {included}")
        return int(cursor.rowcount)


# A prune of at least this many log rows empties the table with TRUNCATE when it can (see below).
TRUNCATE_CHANGE_LOG_ROWS = 10_000


def _truncate_change_log(cursor: CursorWrapper, included: str) -> int | None:
    """PostgreSQL: when a prune would delete many rows and every row of the log is included, empty
    it with TRUNCATE instead and return how many rows went (None: delete them). Deleted rows stay
    in the table until autovacuum, and every run scans it: after a bulk load, millions of them.
    The exclusive lock is only taken if it is granted at once (a writer's open transaction holds
    the table), so writers wait at most a moment."""
    change_log = FactChange._meta.db_table
    cursor.execute(f"SELECT COUNT(*) FROM {change_log} WHERE {included}")
    if cursor.fetchone()[0] < TRUNCATE_CHANGE_LOG_ROWS:
        return None
    try:
        with transaction.atomic():
            cursor.execute("SET LOCAL lock_timeout = '200ms'")
            cursor.execute(f"LOCK TABLE {change_log} IN ACCESS EXCLUSIVE MODE")
            cursor.execute(f"SELECT COUNT(*), COUNT(*) FILTER (WHERE NOT ({included})) FROM {change_log}")
            rows, later = cursor.fetchone()
            if later:
                return None
            cursor.execute(f"TRUNCATE {change_log}")
            cursor.execute("SET LOCAL lock_timeout = DEFAULT")
            return int(rows)
    except OperationalError:  # the lock was not granted in time
        return None


def index_state(run_id: int, *, cells_changed: bool = True) -> None:
    """PostgreSQL: build the lookups the next run patches a state's facts by (DELTA_INDEXES) and the
    drill-down reads it by (DRILL_INDEXES), and analyse its cells, once the state describes the
    published set: after publishing, not in the next run's time.

    The builds are sorts, bound by the processor: one session builds a small index on one core
    and only the large ones in parallel, so outside a transaction (where another session sees
    the state) they are dealt to two sessions, the largest tables first, each to the session with
    less to sort (a full run at 1M deals: ~4 s of building in one session)."""
    schema = run_schema(run_id)
    missing = _missing_indexes(schema)
    sessions: list[list[str]] = [[], []]
    load = [0, 0]
    for table, columns, size in missing:
        emptier = load.index(min(load))
        sessions[emptier].append(delta_index(table, columns, schema=schema))
        load[emptier] += size
    if connection.in_atomic_block:
        sessions = [sessions[0] + sessions[1], []]
    helper = SessionThread(_build_indexes, sessions[1], name="kpi-index") if sessions[1] else None
    try:
        _build_indexes(sessions[0])
    except BaseException:
        if helper is not None:
            helper.join()  # its own error, if any, matters less than this one
        raise
    if helper is not None:
        helper.finish()
    if cells_changed:  # not after a few cells were patched
        # The next run joins the changed cells to these (its planner must know their size).
        # Its key columns only: the other 30 cost 0.3 s at 1M deals and no plan reads them.
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {schema}.kx_cells ({CELL_NAMES})")


def _missing_indexes(schema: str) -> list[tuple[str, str, int]]:
    """(table, columns, the table's size) of the DELTA_INDEXES and DRILL_INDEXES the state lacks
    (a run that patched its facts kept most of them), largest table first."""
    wanted = DELTA_INDEXES + DRILL_INDEXES
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relkind, pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'i')",
            [schema],
        )
        relations = cursor.fetchall()
    sizes = {name: size for name, kind, size in relations if kind == "r"}
    present = {name for name, kind, _ in relations if kind == "i"}
    missing = [(t, c, sizes.get(t, 0)) for t, c in wanted if index_name(t, c) not in present]
    return sorted(missing, key=lambda index: -index[2])


def _build_indexes(statements: list[str]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SET maintenance_work_mem = '{TRANSACTION_SETTINGS['maintenance_work_mem']}'")
        for statement in statements:
            cursor.execute(statement)
        cursor.execute("RESET maintenance_work_mem")


def drop_state(run_id: int) -> None:
    """Drop a run's namespace: its state, or what a failed or dead run left."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP SCHEMA IF EXISTS {run_schema(run_id)} CASCADE")
            return
        prefix = f"{run_schema(run_id)}_"
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, %s) = %s",
            [len(prefix), prefix],
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP TABLE IF EXISTS "{name}"')


def read_change_mark(ctx: RunContext) -> None:
    """What of the change log (FactChange) this run's facts include, read before any fact: on
    PostgreSQL the snapshot (the changes it sees), the newest id it sees, and this transaction's
    own id (its own changes, which its snapshot does not count as committed: a run inside the
    writer's transaction, as in tests); on SQLite, one writer, the newest id."""
    change_log = FactChange._meta.db_table
    if ctx.sql.pg:
        ctx.change_mark = ctx.fetch(
            "SELECT CAST(pg_current_snapshot() AS TEXT), "
            f"(SELECT COALESCE(MAX(id), 0) FROM {change_log}), "
            "COALESCE(CAST(CAST(pg_current_xact_id_if_assigned() AS TEXT) AS BIGINT), -1)"
        )[0]
    else:
        newest = ctx.fetch(f"SELECT COALESCE(MAX(id), 0) FROM {change_log}")[0][0]
        ctx.change_mark = (None, newest, -1)


def change_included(mark: tuple[str | None, int, int], alias: str = "c") -> str:
    """The condition on change log rows (`alias`) that facts read at `mark` include."""
    snapshot, newest, own = mark
    included = f"{alias}.id <= {int(newest)}"
    if snapshot is not None:
        if not re.match(r"^[0-9:,]+$", snapshot):
            raise ValueError(f"unexpected snapshot {snapshot!r}")
        included += (
            f" AND (pg_visible_in_snapshot(CAST(CAST({alias}.xid AS TEXT) AS xid8), "
            f"CAST('{snapshot}' AS pg_snapshot)) OR {alias}.xid = {int(own)})"
        )
    return included


def changes_since(ctx: RunContext, mark: tuple[str | None, int, int]) -> str:
    """The change log's rows that facts read at `mark` do not include."""
    return (
        f"SELECT c.source, c.row_id, c.related_id FROM {FactChange._meta.db_table} c "
        f"WHERE NOT ({change_included(mark)})"
    )


def code_and_settings(ctx: RunContext) -> str:
    """What computed a state besides its facts: the KPI code and the program settings (a
    settings change committed while a run computed must not pass for the state's)."""
    return hashlib.sha256(f"{CODE_VERSION}|{ctx.settings!r}".encode()).hexdigest()[:32]


def keep_state(ctx: RunContext) -> None:
    """Mark the facts complete as the run's state (SQLite: copy them out of the temp tables)."""
    if ctx.state_of is None:
        return
    snapshot, newest, own = ctx.change_mark
    change_included(ctx.change_mark)  # checks the snapshot's text
    snapshot = "NULL" if snapshot is None else f"'{snapshot}'"
    if not ctx.sql.pg:
        for table in STATE_TABLES[:-1]:
            name = state_table(ctx.state_of, table)
            ctx.exec(f'DROP TABLE IF EXISTS "{name}"')
            ctx.exec(f'CREATE TABLE "{name}" AS SELECT * FROM temp.{table}')
    ctx.exec(
        f"CREATE {ctx.fact_table('kx_state')} AS "
        f"SELECT 1 AS complete, {ctx.sql.date_literal(ctx.as_of)} AS as_of, "
        f"CAST('{code_and_settings(ctx)}' AS VARCHAR(64)) AS code, "
        f"CAST({snapshot} AS TEXT) AS snap, CAST({int(newest)} AS BIGINT) AS change_id, "
        f"CAST({int(own)} AS BIGINT) AS own_xid, "
        f"CAST({month_or_null(ctx, 0)} AS INTEGER) AS first_mi, "
        f"CAST({month_or_null(ctx, 1)} AS INTEGER) AS last_mi"
    )
    if not ctx.sql.pg:
        name = state_table(ctx.state_of, "kx_state")
        ctx.exec(f'DROP TABLE IF EXISTS "{name}"')
        ctx.exec(f'CREATE TABLE "{name}" AS SELECT * FROM temp.kx_state')


def month_or_null(ctx: RunContext, i: int) -> str:
    """The fact rows' first (0) or last (1) month index as a literal, kept for the next run."""
    month = ctx.fact_month_bounds[i]
    return "NULL" if month is None else str(int(month))


def create_run_schema(run_id: int) -> None:
    """PostgreSQL: a new, empty schema for the run's facts (whatever an earlier attempt left)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {run_schema(run_id)} CASCADE")
        cursor.execute(f"CREATE SCHEMA {run_schema(run_id)}")


def drop_work_tables(run_id: int) -> None:
    """PostgreSQL: after the run published, drop the tables of its schema that only computing and
    publishing needed; its facts stay as the state."""
    with connection.cursor() as cursor:
        for table in ("kx_del", "kx_ins", "kx_chunks", "kx_tw", "kx_recon"):
            cursor.execute(f"DROP TABLE IF EXISTS {run_schema(run_id)}.{table}")
