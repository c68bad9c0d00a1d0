"""Stage 3, components: additive sums and medians per cell (scope, sid, grain, pidx) into kx_s,
generated from the families' declarations (families.FAMILIES): the shapes of SQL an aggregate
can take and the expansions of rows to scopes."""

from __future__ import annotations

from collections.abc import Callable

from kpis.engine import lifecycle
from kpis.engine.context import RunContext
from kpis.engine.families import FAMILIES, Aggregate, in_periods, plain
from kpis.engine.tables import CELL_DDL


def insert(ctx: RunContext, columns: list[str], select: str) -> None:
    names = "".join(f", {c}" for c in columns)
    ctx.exec(f"INSERT INTO kx_s (scope, sid, grain, pidx{names}) {select}")


def scope_in_chunk(ctx: RunContext, scope: str) -> bool:
    return ctx.chunk.program if scope == "program" else ctx.chunk.partners


def scoped(
    ctx: RunContext,
    rows: str,
    scopes: tuple[str, ...],
    *,
    partner_col: str = "partner_id",
    js_col: str = "js",
) -> str:
    """Expand fact rows to one copy per scope of this chunk with its id as `sid` (program: 0)."""
    sid = {"program": "0", "partner": f"r.{partner_col}", "join_source": f"r.{js_col}"}
    of_chunk = f" WHERE {ctx.chunk.join_source_filter(f'r.{js_col}')}"
    selects = [
        f"SELECT '{scope}' AS scope, {sid[scope]} AS sid, r.* FROM ({rows}) r"
        + ("" if scope == "program" else of_chunk)
        for scope in scopes
        if scope_in_chunk(ctx, scope)
    ]
    return " UNION ALL ".join(selects) or f"SELECT '' AS scope, 0 AS sid, r.* FROM ({rows}) r WHERE 1 = 0"


def median(ctx: RunContext, column: str, rows: str) -> None:
    """kx_s.column = median * 10 of v over rows(scope, sid, grain, pidx, v), from the rows."""
    insert(ctx, [column], ctx.sql.median_times_ten("v", rows, "scope, sid, grain, pidx"))


def additive(
    ctx: RunContext, columns: list[str], rows: str, aggregates: list[str], *, mi: str = "mi"
) -> None:
    """Sum-like components: aggregated per (scope, sid, month) first, then rolled up to every
    grain through kx_grain (exact for sums, counts and maxima; the facts are scanned once).
    `rows` yields scope, sid and the month column; an aggregate starting with MAX( rolls up by MAX.
    """
    monthly = ", ".join(f"{agg} AS c{i}" for i, agg in enumerate(aggregates))
    rolled = ", ".join(
        f"{'MAX' if agg.startswith('MAX(') else 'SUM'}(m.c{i})" for i, agg in enumerate(aggregates)
    )
    insert(
        ctx,
        columns,
        f"""SELECT m.scope, m.sid, g.grain, g.pidx, {rolled}
        FROM (SELECT x.scope, x.sid, x.{mi} AS mi, {monthly} FROM ({rows}) x
              WHERE {in_periods(ctx, f"x.{mi}")}
              GROUP BY x.scope, x.sid, x.{mi}) m
        JOIN kx_grain g ON g.mi = m.mi
        GROUP BY m.scope, m.sid, g.grain, g.pidx""",
    )


def family_rows(ctx: RunContext, family: str, full: str, columns: str = "f.*", where: str = "1 = 1") -> str:
    """One row source of the components, with a `sign` column: in a full computation `full`
    (every row, sign 1); when patching cells, the rows of the family `family` for the affected
    keys now (sign 1) and as the previous run read them (kx_before_*, sign -1), as `columns`
    (column names of the family; by default all of them) filtered by `where`. Every aggregate
    over it weighs a row by its sign, so a patched cell's components change by exactly the
    changed rows' difference."""
    if not ctx.result.cells:
        return f"SELECT 1 AS sign, q.* FROM ({full}) q"
    if columns == "f.*":  # kx_signed_* starts with its sign
        return f"SELECT f.* FROM kx_signed_{family} f WHERE {where}"
    return f"SELECT sign, {columns} FROM kx_signed_{family} f WHERE {where}"


def build(ctx: RunContext) -> None:
    """kx_s: the components of every cell (scope, sid, grain, pidx) from the facts, each family's
    aggregates in turn (families.FAMILIES); when patching cells, the changes of the additive ones
    (medians: `incremental.patching`)."""
    ctx.exec(f"CREATE TEMP TABLE kx_s ({CELL_DDL})")
    dense_keys(ctx)
    for family in FAMILIES:
        for aggregate in family.aggregates:
            if aggregate.shape == "medians":
                medians(ctx, aggregate)
                continue
            assert aggregate.full is not None, f"{family.name}: the rows of {aggregate.components}"
            rows = family_rows(ctx, family.name, aggregate.full(ctx), aggregate.columns, aggregate.where)
            SHAPES[aggregate.shape](ctx, aggregate, rows)


def dense_keys(ctx: RunContext) -> None:
    """Every period for the program and every join source (kept with the cells)."""
    chunk = ctx.chunk
    if ctx.result.cells:
        return
    if chunk.program:
        insert(ctx, [], "SELECT 'program', 0, grain, pidx FROM kx_period")
    if chunk.partners:
        insert(
            ctx,
            [],
            f"SELECT 'join_source', j.id, p.grain, p.pidx "
            f"FROM kx_period p CROSS JOIN kx_js j WHERE {chunk.join_source_filter('j.id')}",
        )


def sums(ctx: RunContext, aggregate: Aggregate, rows: str) -> None:
    """Sum-like components of rows expanded to the aggregate's scopes (of this chunk), a deal
    kept once per scope and sign where it counts once (`distinct`)."""
    scoped_rows = EXPANDERS[aggregate.expand](ctx, rows, aggregate.scopes)
    if scoped_rows is None:
        return  # none of the aggregate's scopes in this chunk
    if aggregate.distinct:
        scoped_rows = f"SELECT DISTINCT sign, scope, sid, {aggregate.distinct} FROM ({scoped_rows}) y"
    if aggregate.having:
        scoped_rows = f"SELECT * FROM ({scoped_rows}) r WHERE {aggregate.having}"
    additive(ctx, list(aggregate.components), scoped_rows, list(aggregate.sums), mi=aggregate.month)


def program_rows(ctx: RunContext, rows: str, scopes: tuple[str, ...]) -> str | None:
    """The rows for the program scope only (the program's segments, which no partner has)."""
    return f"SELECT 'program' AS scope, 0 AS sid, d.* FROM ({rows}) d" if ctx.chunk.program else None


def tagged_costs(ctx: RunContext, rows: str, scopes: tuple[str, ...]) -> str | None:
    """Costs per scope: program all; partner its tagged costs; join source those tagged with it
    or with one of its partners, each cost once."""
    chunk = ctx.chunk
    cost_rows = []
    if chunk.program:
        cost_rows.append(f"SELECT 'program' AS scope, 0 AS sid, sign, cents, cat, mi FROM ({rows}) c")
    if chunk.partners:
        cost_rows += [
            f"SELECT 'partner' AS scope, partner_id AS sid, sign, cents, cat, mi FROM ({rows}) c "
            f"WHERE partner_id IS NOT NULL AND {chunk.join_source_filter('partner_js')}",
            f"""SELECT 'join_source' AS scope, sid, sign, cents, cat, mi FROM (
                SELECT sign, id, tag_js AS sid, cents, cat, mi FROM ({rows}) c WHERE tag_js IS NOT NULL
                UNION SELECT sign, id, partner_js, cents, cat, mi FROM ({rows}) c
                WHERE partner_js IS NOT NULL) j
            WHERE {chunk.join_source_filter("sid")}""",
        ]
    return " UNION ALL ".join(cost_rows) or None


def tagged_deals(ctx: RunContext, rows: str, scopes: tuple[str, ...]) -> str | None:
    """Linked deals per scope as for the costs linking them (program all; partner the costs
    tagged with it; join source those tagged with it or one of its partners): a deal may come
    twice, the aggregate keeps it once per scope (`distinct`)."""
    chunk = ctx.chunk
    deal_rows = []
    if chunk.program:
        deal_rows.append(
            f"SELECT sign, 'program' AS scope, 0 AS sid, deal_id, cents, closed_mi FROM ({rows}) r"
        )
    if chunk.partners:
        deal_rows += [
            f"SELECT sign, 'partner' AS scope, partner_id AS sid, deal_id, cents, closed_mi FROM ({rows}) r "
            f"WHERE partner_id IS NOT NULL AND {chunk.join_source_filter('partner_js')}",
            f"SELECT sign, 'join_source' AS scope, tag_js AS sid, deal_id, cents, closed_mi FROM ({rows}) r "
            f"WHERE tag_js IS NOT NULL AND {chunk.join_source_filter('tag_js')}",
            f"SELECT sign, 'join_source' AS scope, partner_js AS sid, deal_id, cents, closed_mi "
            f"FROM ({rows}) r WHERE partner_js IS NOT NULL AND {chunk.join_source_filter('partner_js')}",
        ]
    return " UNION ALL ".join(deal_rows) or None


EXPANDERS: dict[str, Callable[[RunContext, str, tuple[str, ...]], str | None]] = {
    "scoped": scoped,
    "program": program_rows,
    "tagged_costs": tagged_costs,
    "tagged_deals": tagged_deals,
}


def medians(ctx: RunContext, aggregate: Aggregate) -> None:
    """Median components from the rows, in full computations (patched cells recompute the
    medians that changed themselves)."""
    if ctx.result.cells:
        return
    for column, rows in median_rows(ctx).items():
        if column in aggregate.components:
            median(ctx, column, rows)


def active_partners(ctx: RunContext, aggregate: Aggregate, activities: str) -> None:
    """Active partners: a qualifying activity within the 90 days ending on the period's last day.
    kx_actm keeps each partner's latest activity per month, so months end_mi-3..end_mi suffice."""
    (column,) = aggregate.components
    periods, of_partner = "kx_period", ""
    if ctx.result.cells:
        periods, of_partner = changed_activity_periods(ctx, activities), "pe.partner_id = x.partner_id AND "
    insert(
        ctx,
        [column],
        f"""SELECT scope, sid, grain, pidx, SUM(sign) FROM (
            SELECT DISTINCT x.sign, x.scope, x.sid, pe.grain, pe.pidx, x.partner_id
            FROM {periods} pe JOIN ({scoped(ctx, activities, aggregate.scopes)}) x
              ON {of_partner}x.mi BETWEEN pe.end_mi - 3 AND pe.end_mi AND x.maxd >= pe.window_start) u
        GROUP BY scope, sid, grain, pidx""",
    )


def changed_activity_periods(ctx: RunContext, signed: str) -> str:
    """Patched cells: kx_act_per, the (partner, period) pairs whose window holds a month where the
    partner's activity rows now (sign 1) and before (sign -1) differ. Whether a partner counts as
    active in a period depends on its rows of the window's months only, so in every other pair
    its rows now and before count the same and cancel: they need not be spread over the periods
    (a night's run signs every month of ~2,000 partners; it changes one or two of each)."""
    ctx.exec(
        f"""CREATE TEMP TABLE kx_act_per AS
        SELECT DISTINCT c.partner_id, pe.grain, pe.pidx, pe.end_mi, pe.window_start
        FROM (SELECT partner_id, mi FROM ({signed}) a
              GROUP BY partner_id, js, mi, maxd HAVING SUM(sign) <> 0) c
        JOIN kx_period pe ON c.mi BETWEEN pe.end_mi - 3 AND pe.end_mi"""
    )
    ctx.analyze("kx_act_per")
    return "kx_act_per"


def opportunities_influenced(ctx: RunContext, aggregate: Aggregate, touches: str) -> None:
    """Distinct deals with a counting touch in the period, per scope.

    kx_opp holds each (partner, deal, month) once; a row also counts for its quarter (year) when
    it is the deal's first month touched in that quarter (year), so one sorted pass gives all
    three grains and the quarters and years roll up from months like a sum. An incremental run
    keeps the months of whole periods: a deal's earlier month in the same period stays. Patching,
    each sign's rows are a deal's touches of their own (now, before), apart."""
    chunk, patching = ctx.chunk, ctx.result.cells
    by_sign = "sign, " if patching else ""
    ctx.exec(
        f"""CREATE TEMP TABLE kx_opp AS
        SELECT {"sign" if patching else "1 AS sign"}, partner_id, js, deal_id, touched_mi AS mi
        FROM ({touches}) t
        WHERE {"1 = 1" if chunk.program else chunk.join_source_filter("js")}
              AND {in_periods(ctx, "touched_mi")}
        GROUP BY {by_sign}partner_id, js, deal_id, touched_mi"""
    )
    ctx.analyze("kx_opp")
    # One window per scope (sorting the scopes apart keeps each sort in memory). A join source's
    # or the program's rows repeat a (deal, month) that two of its partners touched: the copy
    # after the first has prev = mi and counts for no grain, so no DISTINCT pass (a hash
    # aggregate and a second sort) is needed before the window.
    in_chunk = chunk.join_source_filter("js")
    scope_rows = {
        "partner": f"SELECT sign, partner_id AS sid, deal_id, mi FROM kx_opp WHERE {in_chunk}",
        "join_source": f"SELECT sign, js AS sid, deal_id, mi FROM kx_opp WHERE {in_chunk}",
        "program": "SELECT sign, 0 AS sid, deal_id, mi FROM kx_opp",
    }
    monthly = " UNION ALL ".join(
        f"""SELECT '{scope}' AS scope, sid, mi, SUM(sign * first_m) AS n, SUM(sign * first_q) AS nq,
                   SUM(sign * first_y) AS ny
        FROM (SELECT sign, sid, mi,
                     CASE WHEN prev IS NULL OR prev <> mi THEN 1 ELSE 0 END AS first_m,
                     CASE WHEN prev IS NULL OR prev / 3 <> mi / 3 THEN 1 ELSE 0 END AS first_q,
                     CASE WHEN prev IS NULL OR prev / 12 <> mi / 12 THEN 1 ELSE 0 END AS first_y
              FROM (SELECT sign, sid, mi,
                           LAG(mi) OVER (PARTITION BY {by_sign}sid, deal_id ORDER BY mi) AS prev
                    FROM ({rows}) o) f) x
        GROUP BY sid, mi"""
        for scope, rows in scope_rows.items()
        if scope in aggregate.scopes and scope_in_chunk(ctx, scope)
    )
    (column,) = aggregate.components
    insert(
        ctx,
        [column],
        f"""SELECT m.scope, m.sid, g.grain, g.pidx,
            SUM(CASE g.grain WHEN 'month' THEN m.n WHEN 'quarter' THEN m.nq ELSE m.ny END)
        FROM ({monthly}) m
        JOIN kx_grain g ON g.mi = m.mi
        GROUP BY m.scope, m.sid, g.grain, g.pidx""",
    )


# How an aggregate's rows become components (families.Aggregate.shape); medians: `medians`.
SHAPES: dict[str, Callable[[RunContext, Aggregate, str], None]] = {
    "sums": sums,
    "active": active_partners,
    "opportunities": opportunities_influenced,
}


def median_rows(
    ctx: RunContext, deals: str = "kx_deal", first_sales: str | None = None, grains: str = "kx_grain"
) -> dict[str, str]:
    """Per median component, its rows (scope, sid, grain, pidx, v, sign) from the deals `deals`
    (kx_deal's columns or the deals family's, with a sign) and the first-sale rows `first_sales`
    (the first_sales family's columns with a sign; default all of them, sign 1), in the periods
    of `grains` (kx_grain's columns)."""
    cycle = ctx.sql.days_between("d.closed_d", "d.created_d")
    sign = "d.sign" if deals != "kx_deal" else "1"
    rows = {}
    if ctx.chunk.program:
        for seg, column in (("s", "cyc_src_med"), ("i", "cyc_inf_med"), ("d", "cyc_dir_med")):
            rows[column] = f"""SELECT 'program' AS scope, 0 AS sid, g.grain, g.pidx, {cycle} AS v,
                    {sign} AS sign FROM {deals} d JOIN {grains} g ON g.mi = d.closed_mi
                WHERE d.status = 'won' AND d.seg = '{seg}'"""
    js = "d.sp_js" if deals != "kx_deal" else "p.js"
    partner = "" if deals != "kx_deal" else " JOIN kx_partner p ON p.id = d.sp"
    sourced_cycle = (
        f"SELECT d.sp AS partner_id, {js} AS js, d.closed_mi, {cycle} AS v, {sign} AS sign "
        f"FROM {deals} d{partner} WHERE d.status = 'won' AND d.sp IS NOT NULL"
    )
    rows["cyc_src_med"] = f"""SELECT x.scope, x.sid, g.grain, g.pidx, x.v, x.sign
        FROM ({scoped(ctx, sourced_cycle, ("partner", "join_source"))}) x
        JOIN {grains} g ON g.mi = x.closed_mi""" + (
        f" UNION ALL {rows['cyc_src_med']}" if "cyc_src_med" in rows else ""
    )
    ttfs = first_sales or f"SELECT 1 AS sign, f.* FROM ({lifecycle.first_sale_rows(ctx, plain)}) f"
    rows["ttfs_med"] = f"""SELECT x.scope, x.sid, g.grain, g.pidx, x.v, x.sign
        FROM ({scoped(ctx, ttfs, ("program", "partner", "join_source"))}) x
        JOIN {grains} g ON g.mi = x.joined_mi WHERE x.has_sale = 1"""
    return rows
