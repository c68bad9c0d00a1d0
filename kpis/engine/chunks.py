"""Chunked runs (PostgreSQL): the shared facts once, then the scopes in chunks on several sessions."""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

from django.db import connection, transaction

from kpis.engine import (
    attribution,
    cells,
    components,
    facts,
    lifecycle,
    metrics,
    periods,
    reconciliation,
    state,
)
from kpis.engine.context import Chunk, ComputeResult, RunContext
from kpis.engine.incremental import changed_periods, delta_facts, patching
from kpis.engine.publication import (
    PUBLISHED_COLUMNS,
    VANISHED_COLUMNS,
    grouped_diff,
    published_cells,
    published_periods,
)
from kpis.engine.session import SessionThread
from kpis.engine.tables import run_schema, state_table
from kpis.models import KpiValue


def run_facts(ctx: RunContext) -> ComputeResult:
    """Chunked run, step 1: the shared fact tables and the periods in the run's schema, plus the
    empty shared kx_del / kx_ins the chunks fill. The chunk holding the program scope adds the
    reconciliation items (kx_recon), from the same facts.

    Two sessions share the work: the touches' and the deals' facts are built side by side on
    one exported REPEATABLE READ snapshot, then the facts derived from them (activities and
    first sales; attribution shares) side by side again, reading only those tables.
    """
    assert ctx.schema and not connection.in_atomic_block
    with transaction.atomic():
        ctx.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        ctx.begin_local()
        with ctx.sql.session_time_zone(), ctx.search_path():
            if _patched_previous_facts(ctx):
                return ctx.result
        helper = _touch_and_deal_facts(ctx)
    helper.finish()
    _derived_facts(ctx)
    with transaction.atomic():
        ctx.begin_local()
        with ctx.sql.session_time_zone(), ctx.search_path():
            changed_periods.restrict_to_changed_periods(ctx)
            cells.prepare_cells(ctx)
            state.keep_state(ctx)
            check_cell_base(ctx)
    return ctx.result


def _patched_previous_facts(ctx: RunContext) -> bool:
    """Patch the previous run's facts in this session, on its snapshot, and when that worked
    prepare the run's cells: True when the facts need no rebuilding."""
    if not delta_facts.patched_facts(ctx):
        return False
    periods.build(ctx)
    if patching.cells_patchable(ctx):
        # Few cells to stage: this session stages and diffs them, no chunks.
        patching.patch_cells(ctx)
        # The publication reads the affected keys (the reconciliation items).
        state.keep_state(ctx)
    else:
        create_shared_diff_tables(ctx)
        changed_periods.restrict_to_changed_periods(ctx)
        cells.prepare_cells(ctx)
        state.keep_state(ctx)
        delta_facts.drop_delta_tables(ctx)
    return True


def _touch_and_deal_facts(ctx: RunContext) -> SessionThread:
    """Build the touches' facts in this session (inside its REPEATABLE READ transaction) while a
    helper session builds the deals' on the same exported snapshot; returns the helper, which the
    caller finishes after this transaction ends."""
    imported = threading.Event()

    def deals(snapshot: str) -> None:
        with transaction.atomic():
            ctx.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            ctx.exec(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            imported.set()
            ctx.begin_local()
            ctx.share_cores()
            with ctx.sql.session_time_zone(), ctx.search_path():
                facts.facts_deals(ctx, segment_from_base=True)
                facts.facts_pipeline(ctx)
                # This session finishes ~2 s before the touches' one: the lookups the next run
                # patches these tables by are built in that wait, not after publishing.
                facts.index_for_patching(ctx, "kx_deal", "kx_reg", "kx_cost", "kx_link")

    snapshot = ctx.fetch("SELECT pg_export_snapshot()")[0][0]
    if not re.match(r"^[0-9A-F-]+$", snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    helper = SessionThread(deals, snapshot, name="kpi-facts", on_exit=imported.set)
    ctx.share_cores()
    with ctx.sql.session_time_zone(), ctx.search_path():
        facts.facts_touches(ctx)
    imported.wait()  # an exported snapshot lives only as long as its transaction
    return helper


def _derived_facts(ctx: RunContext) -> None:
    """The facts derived from the touches' and deals' (attribution shares in a helper session;
    activities, first sales and periods in this one), side by side, reading only those tables."""

    def attribution_facts() -> None:
        with transaction.atomic():
            ctx.begin_local()
            ctx.share_cores()
            with ctx.sql.session_time_zone(), ctx.search_path():
                attribution.build(ctx)
                ctx.analyze("kx_attr")
                # This session finishes ~1 s before the other one (at 1M deals): the drill-down's
                # lookups of these three tables, which index_state would build after publishing,
                # are built in that wait. (The touches' take longer than the wait.)
                facts.index_for_drilldown(ctx, "kx_attr", "kx_deal", "kx_reg")

    helper = SessionThread(attribution_facts, name="kpi-facts")
    with transaction.atomic():
        ctx.begin_local()
        ctx.share_cores()
        with ctx.sql.session_time_zone(), ctx.search_path():
            lifecycle.build(ctx)
            facts.new_customers(ctx)
            ctx.analyze("kx_newcust")
            periods.build(ctx)
            create_shared_diff_tables(ctx)
    helper.finish()


def check_cell_base(ctx: RunContext) -> None:
    """Keep `cell_base` only if its state's cells make the published rows of equal cells: the
    same code and settings, join sources, published keys and periods (their labels). Anything
    else a published row shows comes from its cell's components, which the chunks compare."""
    base = ctx.cell_base
    if base is None:
        return
    code = ctx.fetch(f"SELECT code FROM {state_table(base, 'kx_state')}")
    same = bool(code) and code[0][0] == state.code_and_settings(ctx)
    if same:
        same = not changed_periods.labels_changed(
            ctx, functools.partial(state_table, base), periods=True, new_keys=True
        )
    ctx.cell_base = base if same else None
    ctx.result.cell_base = ctx.cell_base


def create_shared_diff_tables(ctx: RunContext) -> None:
    """Each chunk's differences from the published set, for its own scopes, in KpiValue's own
    column types."""
    value_table = KpiValue._meta.db_table
    for table, columns in (("kx_del", VANISHED_COLUMNS), ("kx_ins", PUBLISHED_COLUMNS)):
        ctx.exec(
            f"CREATE UNLOGGED TABLE {ctx.schema}.{table} AS "
            f"SELECT {columns}, CAST(0 AS INTEGER) AS chunk FROM {value_table} WHERE 1 = 0"
        )


def run_chunk(ctx: RunContext, number: int, chunk: Chunk) -> int:
    """Chunked run, step 2: one chunk's rows, diffed against the published rows of its scopes
    into the shared kx_del / kx_ins (replacing any earlier attempt of the same chunk); returns
    how many rows the chunk staged. Reads only the shared facts."""
    assert ctx.schema
    ctx.chunk = chunk
    with ctx.search_path():
        # The facts step of an incremental run left kx_pubper when it trimmed the periods.
        ctx.result.restricted = ctx.fetch(f"SELECT to_regclass('{ctx.schema}.kx_pubper') IS NOT NULL")[0][0]
        ctx.drop_scope_tables()
        with transaction.atomic():
            ctx.begin_local()
            ctx.share_cores()
            components.build(ctx)
            metrics.merge_cells(ctx)
            cells.store_cells(ctx, number)
            if ctx.cell_base is not None:
                cells.keep_changed_cells(ctx)
            metrics.metric_values(ctx)
            metrics.publishable(ctx)
            if chunk.program:
                # The reconciliation items read only the shared facts: the same snapshot.
                ctx.exec(f"DROP TABLE IF EXISTS {ctx.schema}.kx_recon")
                reconciliation.build(ctx)
            n = int(number)
            for table in ("kx_del", "kx_ins"):
                ctx.exec(f"DELETE FROM {ctx.schema}.{table} WHERE chunk = {n}")
            stage_chunk_diff(ctx, n)
        ctx.drop_scope_tables()
    return ctx.result.staged_rows


def stage_chunk_diff(ctx: RunContext, n: int) -> None:
    """Chunk `n`'s differences from the published rows of its scopes into the shared kx_del
    (rows to remove) and kx_ins (rows to add): a changed row is in both (the publication pairs
    them into an update)."""
    columns, published = PUBLISHED_COLUMNS, published_slice(ctx)
    if not ctx.fetch(f"SELECT EXISTS (SELECT 1 FROM {published} k)")[0][0]:
        # A first publication: every staged row, in its order (grouped rows come in hash
        # order, and inserting them so cost KpiValue's indexes 11 s at 1M deals).
        ctx.exec(
            f"INSERT INTO {ctx.schema}.kx_ins ({columns}, chunk) SELECT {columns}, {n} FROM pg_temp.kx_pub"
        )
        return
    ctx.exec("DROP TABLE IF EXISTS pg_temp.kx_cdiff")
    ctx.exec(f"CREATE TEMP TABLE kx_cdiff AS {grouped_diff(staged='pg_temp.kx_pub', published=published)}")
    ctx.exec(
        f"INSERT INTO {ctx.schema}.kx_del ({VANISHED_COLUMNS}, chunk) "
        f"SELECT {VANISHED_COLUMNS}, {n} FROM kx_cdiff WHERE published = 1"
    )
    ctx.exec(
        f"INSERT INTO {ctx.schema}.kx_ins ({columns}, chunk) "
        f"SELECT {columns}, {n} FROM kx_cdiff WHERE staged = 1"
    )
    ctx.exec("DROP TABLE kx_cdiff")


def published_slice(ctx: RunContext) -> str:
    """The published rows of this chunk's scopes (the rest of KpiValue is other chunks'), in the
    periods the run recomputes."""
    if ctx.cell_base is not None:
        return published_cells(ctx.settings.attribution_model)
    scopes = chunk_scopes(ctx, "k0.scope", join_source="k0.join_source_id", partner="k0.partner_id")
    periods = f" AND ({published_periods('k0')})" if ctx.result.restricted else ""
    return f"(SELECT * FROM {KpiValue._meta.db_table} k0 WHERE {scopes}{periods})"


def chunk_scopes(ctx: RunContext, scope: str, *, join_source: str, partner: str) -> str:
    """The condition that a row (its `scope` column, and the ids in `join_source` / `partner`)
    belongs to this chunk's scopes; a partner belongs to the chunk of its join source now."""
    chunk, parts = ctx.chunk, []
    if chunk.program:
        parts.append(f"{scope} = 'program'")
    if chunk.partners:
        parts.append(f"({scope} = 'join_source' AND {chunk.join_source_filter(join_source)})")
        parts.append(
            f"({scope} = 'partner' AND {partner} IN "
            f"(SELECT id FROM kx_partner WHERE {chunk.join_source_filter('js')}))"
        )
    return "(" + (" OR ".join(parts) or "1 = 0") + ")"


def chunk_weights(ctx: RunContext) -> list[tuple[int, int]]:
    """(join source id, fact rows of its partners) for every join source, partners or not:
    what the chunks are balanced on."""
    with ctx.search_path():
        return ctx.fetch(
            """SELECT j.id, CAST(COUNT(p.id) + COALESCE(SUM(t.n), 0) AS BIGINT)
            FROM kx_js j
            LEFT JOIN kx_partner p ON p.js = j.id
            LEFT JOIN (SELECT partner_id, COUNT(*) AS n FROM kx_touch GROUP BY partner_id) t
                   ON t.partner_id = p.id
            GROUP BY j.id ORDER BY j.id"""
        )


# -- the plan of a chunked run (kx_chunks in its schema): one row per chunk -----------------------
def write_plan(run_id: int, rows: list[dict[str, Any]]) -> None:
    """Create the run's plan with one row per chunk (keys: n, program, join_sources, periods,
    base_version, engine_settings, cell_base, started_version), in the caller's transaction."""
    schema = run_schema(run_id)
    columns = (
        "n",
        "program",
        "join_sources",
        "periods",
        "base_version",
        "engine_settings",
        "cell_base",
        "started_version",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {schema}.kx_chunks (n INTEGER PRIMARY KEY, program BOOLEAN NOT NULL, "
            "join_sources TEXT NOT NULL, done BOOLEAN NOT NULL DEFAULT FALSE, periods INTEGER NOT NULL, "
            "base_version TEXT, engine_settings TEXT NOT NULL, cell_base INTEGER, started_version TEXT)"
        )
        for row in rows:
            cursor.execute(
                f"INSERT INTO {schema}.kx_chunks ({', '.join(columns)}) "
                f"VALUES ({', '.join(['%s'] * len(columns))})",
                [row[column] for column in columns],
            )


def planned_chunks(run_id: int, number: int | None = None) -> list[dict[str, Any]]:
    """The rows of the run's chunk plan, or the one of chunk `number`."""
    with connection.cursor() as cursor:
        where = "" if number is None else f" WHERE n = {int(number)}"
        cursor.execute(f"SELECT * FROM {run_schema(run_id)}.kx_chunks{where} ORDER BY n")
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def mark_chunk_done(run_id: int, number: int) -> tuple[int, int, str | None]:
    """In the caller's transaction: chunk `number` is done. Returns how many chunks remain, the
    periods the run recomputes and the plan's base version. Every row of the plan is locked first,
    which serialises the "am I the last one?" check of chunks finishing together."""
    schema = run_schema(run_id)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT n FROM {schema}.kx_chunks ORDER BY n FOR UPDATE")
        cursor.execute(f"UPDATE {schema}.kx_chunks SET done = TRUE WHERE n = %s", [number])
        cursor.execute(
            f"SELECT SUM(CASE WHEN done THEN 0 ELSE 1 END), MAX(periods), MAX(base_version) "
            f"FROM {schema}.kx_chunks"
        )
        remaining, periods, base_version = cursor.fetchone()
    return int(remaining), int(periods), base_version


def forget_cell_base(run_id: int) -> None:
    """The plan's chunks stage every row from now on (a chunk delivered again reads no cell base)."""
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {run_schema(run_id)}.kx_chunks SET cell_base = NULL")
