"""Patched cells: the previous run's components adjusted by the changed rows' signed rows."""

from __future__ import annotations

import dataclasses

from kpis.engine import cells, components, families, metrics, reconciliation
from kpis.engine.context import RunContext
from kpis.engine.incremental import changed_periods
from kpis.engine.tables import CELL_COLUMNS, CELL_NAMES, COMPONENTS, MEDIAN_COMPONENTS, set_aside


def signed_rows(ctx: RunContext) -> None:
    """kx_signed_<family>: each family's rows of the affected keys now (sign 1) and as the
    previous run read them (kx_before_*, sign -1), written once for the components to read."""
    rows = families.contributions(ctx, families.affected_touches("kx_aff_touch_now"), ctx.as_of)
    for i, now in enumerate(rows):
        key = now.key
        if key is None:
            continue  # targets: staged whole
        before = f"SELECT -1, {now.names()} FROM kx_before_{i} b"
        if now.keys == "kx_aff_partner":
            # A partner's rows of these families change only with its own row, its activities or
            # its first sale (kx_recalc_partner): the other affected partners' rows cancel out.
            now = dataclasses.replace(now, keys="kx_recalc_partner")
            before += f" WHERE b.{key.split('.')[-1]} IN (SELECT k FROM kx_recalc_partner)"
        ctx.exec(
            f"CREATE TEMP TABLE kx_signed_{now.name} AS SELECT 1 AS sign, {now.columns} "
            f"FROM {now.source(affected_only=True)} UNION ALL {before}"
        )
        ctx.analyze(f"kx_signed_{now.name}")


def cells_patchable(ctx: RunContext) -> bool:
    """Whether this run, on patched facts, can adjust the previous run's cells instead of
    recomputing periods: the same periods, and no join source or published key gone or renamed
    (either changes rows of cells no changed fact row lands in)."""
    if not ctx.result.delta:
        return False
    return not changed_periods.labels_changed(ctx, set_aside, periods=True)


def patch_cells(ctx: RunContext) -> None:
    """Stage only the cells the changed rows change (kx_pubcell), from the previous run's
    components adjusted by them (kx_cells, kept with the state, is updated in place).

    Additive components (sums, counts, distinct deals or partners per cell, each a sum over
    the facts' keys) change by the affected keys' rows now minus their rows before: the same
    aggregates over rows signed +1 and -1 (`components.family_rows`). Medians cannot be adjusted: a cell whose
    median rows changed (as multisets) has its median recomputed from all its rows. Targets'
    cells, before and now, are staged whole; so are the affected keys' reconciliation items.
    """
    ctx.result.cells = True
    signed_rows(ctx)
    components.build(ctx)
    changed_medians(ctx)
    adjust_cells(ctx)
    stage_patched_cells(ctx)


def changed_medians(ctx: RunContext) -> None:
    """kx_dmed: the cells whose median rows changed (as multisets); their medians recomputed from
    all their rows into kx_s."""
    # The medians' rows net of those that cancel (a deal whose amount alone changed gives none).
    cycle_columns = "id, status, seg, sp, sp_js, created_d, closed_d, closed_mi"
    signed_deals = (
        f"(SELECT {cycle_columns}, SUM(sign) AS sign FROM ({components.family_rows(ctx, 'deals', '')}) f "
        f"GROUP BY {cycle_columns} HAVING SUM(sign) <> 0)"
    )
    sale_columns = "partner_id, js, joined_mi, has_sale, v"
    sales = components.family_rows(ctx, "first_sales", "", sale_columns)
    signed_first_sales = (
        f"SELECT SUM(sign) AS sign, {sale_columns} FROM ({sales}) f "
        f"GROUP BY {sale_columns} HAVING SUM(sign) <> 0"
    )
    ctx.exec(
        "CREATE TEMP TABLE kx_dmed (col VARCHAR(16), scope VARCHAR(12), sid BIGINT, "
        "grain VARCHAR(8), pidx INTEGER)"
    )
    for column, rows in components.median_rows(ctx, signed_deals, signed_first_sales).items():
        ctx.exec(
            f"""INSERT INTO kx_dmed (col, scope, sid, grain, pidx)
            SELECT DISTINCT '{column}', scope, sid, grain, pidx FROM (
                SELECT scope, sid, grain, pidx, v FROM ({rows}) r
                GROUP BY scope, sid, grain, pidx, v HAVING SUM(sign) <> 0) x"""
        )
    ctx.analyze("kx_dmed")
    dirty = {col for (col,) in ctx.fetch("SELECT DISTINCT col FROM kx_dmed")}
    cycles = sorted(dirty & {"cyc_src_med", "cyc_inf_med", "cyc_dir_med"})
    if cycles:
        # The won deals of the sales cycles' changed periods' months, read once for all three
        # (each reading the facts through its own join would plan an index scan of them all).
        columns = ", ".join(f"'{c}'" for c in cycles)
        ctx.exec(
            f"""CREATE TEMP TABLE kx_dmed_deals AS
            SELECT 1 AS sign, d.id, d.status, d.seg, d.sp, p.js AS sp_js,
                   d.created_d, d.closed_d, d.closed_mi
            FROM kx_deal d LEFT JOIN kx_partner p ON p.id = d.sp
            WHERE d.status = 'won' AND d.closed_mi IN (
                SELECT g.mi FROM kx_grain g JOIN kx_dmed m ON m.grain = g.grain AND m.pidx = g.pidx
                WHERE m.col IN ({columns}))"""
        )
        # Unanalysed it looks like a few hundred rows (it holds a year's won deals, ~120,000 at
        # 1M deals), and the medians read it through nested loops. Its size is what matters: one column.
        ctx.analyze("kx_dmed_deals (seg)")
    for column in sorted(dirty):
        # The months of the column's changed periods only, before the rows are spread to cells.
        ctx.exec("DROP TABLE IF EXISTS kx_dgrain")
        ctx.exec(
            f"""CREATE TEMP TABLE kx_dgrain AS SELECT g.* FROM kx_grain g WHERE EXISTS (
                SELECT 1 FROM kx_dmed m
                WHERE m.col = '{column}' AND m.grain = g.grain AND m.pidx = g.pidx)"""
        )
        ctx.analyze("kx_dgrain")
        deals = "kx_dmed_deals" if column in cycles else "kx_deal"
        rows = components.median_rows(ctx, deals, grains="kx_dgrain")[column]
        components.median(
            ctx,
            column,
            f"SELECT r.* FROM ({rows}) r WHERE EXISTS (SELECT 1 FROM kx_dmed m "
            f"WHERE m.col = '{column}' AND {cells.cell_match('m', 'r')})",
        )


def adjust_cells(ctx: RunContext) -> None:
    """kx_cells adjusted by kx_s: additive components plus the changes, medians replaced where
    they were recomputed; kx_touched lists the cells that changed."""
    additive = [c for c in COMPONENTS if c not in MEDIAN_COMPONENTS]
    ctx.analyze(f"kx_s ({CELL_NAMES})")
    cell = CELL_NAMES
    ctx.exec(
        f"CREATE TEMP TABLE kx_dcell AS SELECT {cell}, "
        + ", ".join(f"SUM(COALESCE({c}, 0)) AS {c}" for c in additive)
        + ", "
        + ", ".join(f"MAX({c}) AS {c}" for c in MEDIAN_COMPONENTS)
        + f" FROM kx_s GROUP BY {cell}"
    )
    ctx.exec(
        f"""CREATE TEMP TABLE kx_dflag AS SELECT {cell}, """
        + ", ".join(f"MAX(CASE WHEN col = '{c}' THEN 1 ELSE 0 END) AS f_{c}" for c in MEDIAN_COMPONENTS)
        + f" FROM kx_dmed GROUP BY {cell}"
    )
    ctx.exec(
        f"CREATE TEMP TABLE kx_touched AS SELECT {cell} FROM kx_dcell WHERE "
        + " OR ".join(f"{c} <> 0" for c in additive)
        + f" UNION SELECT {cell} FROM kx_dflag"
    )
    ctx.analyze(f"kx_dcell ({cell})", f"kx_dflag ({cell})", "kx_touched")
    empty = ", ".join("NULL" if c in MEDIAN_COMPONENTS else "0" for c in COMPONENTS)
    ctx.exec(
        f"""INSERT INTO kx_cells ({CELL_COLUMNS}, chunk)
        SELECT t.scope, t.sid, t.grain, t.pidx, {empty}, 0 FROM kx_touched t
        WHERE NOT EXISTS (SELECT 1 FROM kx_cells c WHERE {cells.cell_match("c", "t")})"""
    )
    patched = ", ".join(
        f"CASE WHEN f.f_{c} = 1 THEN d.{c} ELSE c.{c} END AS {c}"
        if c in MEDIAN_COMPONENTS
        else f"c.{c} + COALESCE(d.{c}, 0) AS {c}"
        for c in COMPONENTS
    )
    ctx.exec(
        f"""CREATE TEMP TABLE kx_newcell AS
        SELECT c.scope, c.sid, c.grain, c.pidx, {patched}, 0 AS chunk
        FROM kx_touched t JOIN kx_cells c ON {cells.cell_match("c", "t")}
        LEFT JOIN kx_dcell d ON {cells.cell_match("d", "t")}
        LEFT JOIN kx_dflag f ON {cells.cell_match("f", "t")}"""
    )
    ctx.exec(
        f"DELETE FROM kx_cells WHERE EXISTS (SELECT 1 FROM kx_touched t "
        f"WHERE {cells.cell_match('kx_cells', 't')})"
    )
    ctx.exec(f"INSERT INTO kx_cells ({CELL_COLUMNS}, chunk) SELECT * FROM kx_newcell")


def stage_patched_cells(ctx: RunContext) -> None:
    """kx_pubcell (the changed cells and the targets' cells, before and now), their metrics and
    kx_pub, and the affected keys' reconciliation items."""
    cell = CELL_NAMES
    targets = families.family_index("targets")
    ctx.exec(
        f"""CREATE TEMP TABLE kx_pubcell AS
        SELECT x.scope, x.sid, x.grain, x.pidx, pe.label, pe.start_d FROM (
            SELECT {cell} FROM kx_touched
            UNION SELECT {cell} FROM ({cells.target_cells(ctx, "kx_tgt")}) a
            UNION SELECT {cell} FROM ({cells.target_cells(ctx, f"kx_before_{targets}")}) b) x
        JOIN kx_period pe ON pe.grain = x.grain AND pe.pidx = x.pidx"""
    )
    ctx.analyze("kx_pubcell")
    ctx.exec(
        f"CREATE TEMP TABLE kx_m AS SELECT {CELL_COLUMNS} FROM kx_cells c "
        f"WHERE EXISTS (SELECT 1 FROM kx_pubcell p WHERE {cells.cell_match('c', 'p')})"
    )
    metrics.metric_values(ctx)
    metrics.publishable(ctx)
    reconciliation.build(ctx, affected_only=True)
    ctx.result.restricted = True
    # The periods the changes touched (the targets' cells are staged every time).
    ctx.result.periods_recomputed = ctx.fetch(
        "SELECT COUNT(*) FROM (SELECT DISTINCT grain, pidx FROM kx_touched) p"
    )[0][0]
