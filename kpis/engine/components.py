"""Stage 3, components: additive sums and medians per cell (scope, sid, grain, pidx) into kx_s."""

from __future__ import annotations

from kpis.engine import lifecycle
from kpis.engine.context import RunContext
from kpis.engine.incremental.changed_periods import plain
from kpis.engine.tables import CELL_DDL
from kpis.models import CostEntry


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


def in_periods(ctx: RunContext, month: str) -> str:
    """The condition keeping an incremental run's rows to the months of the periods it
    recomputes, before they are grouped. Whole periods: kx_grain holds every month of each
    (and a changed month's quarter and year are recomputed too)."""
    return f"{month} IN (SELECT mi FROM kx_grain)" if ctx.result.restricted else "1 = 1"


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


# The scopes a family of rows is counted for.
ALL = ("program", "partner", "join_source")
GROUPS = ("program", "join_source")
PARTNERS = ("partner", "join_source")


def build(ctx: RunContext) -> None:
    """kx_s: the components of every cell (scope, sid, grain, pidx) from the facts; when
    patching cells, the changes of the additive ones (medians: `incremental.patching`)."""
    ctx.exec(f"CREATE TEMP TABLE kx_s ({CELL_DDL})")
    dense_keys(ctx)
    revenue(ctx)
    recruitment(ctx)
    active_partners(ctx)
    pipeline(ctx)
    opportunities_influenced(ctx)
    costs(ctx)
    mdf_return(ctx)
    new_customers(ctx)


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


def _won(seg: str | None, what: str) -> str:
    cond = "status = 'won'" + (f" AND seg = '{seg}'" if seg else "")
    return f"SUM(CASE WHEN {cond} THEN sign * {what} ELSE 0 END)"


def _lost(seg: str) -> str:
    return f"SUM(CASE WHEN status = 'lost' AND seg = '{seg}' THEN sign ELSE 0 END)"


def revenue(ctx: RunContext) -> None:
    """Revenue, win rates and sales cycles: deals closed in the period (the deals, influence and
    attribution families)."""
    closed = "d.status IN ('won', 'lost')"
    # Program revenue and win rates by segment.
    if ctx.chunk.program:
        additive(
            ctx,
            ["won_c", "won_n", "src_c", "src_n", "inf_c", "inf_n", "dir_c", "dir_n"]
            + ["lost_src", "lost_inf", "lost_dir"],
            "SELECT 'program' AS scope, 0 AS sid, d.* FROM "
            f"({family_rows(ctx, 'deals', f'SELECT d.* FROM kx_deal d WHERE {closed}')}) d",
            [_won(None, "cents"), _won(None, "1")]
            + [_won(seg, what) for seg in ("s", "i", "d") for what in ("cents", "1")]
            + [_lost("s"), _lost("i"), _lost("d")],
            mi="closed_mi",
        )
    # Sourced deals per partner and join source.
    sourced_rows = family_rows(
        ctx,
        "deals",
        "SELECT d.sp AS partner_id, p.js, d.status, d.cents, d.closed_mi FROM kx_deal d "
        f"JOIN kx_partner p ON p.id = d.sp WHERE d.sp IS NOT NULL AND {closed}",
        "sp AS partner_id, sp_js AS js, status, cents, closed_mi",
        "sp IS NOT NULL",
    )
    additive(
        ctx,
        ["src_c", "src_n", "lost_src"],
        scoped(ctx, sourced_rows, PARTNERS),
        [_won(None, "cents"), _won(None, "1"), "SUM(CASE WHEN status = 'lost' THEN sign ELSE 0 END)"],
        mi="closed_mi",
    )
    # Influenced revenue: the full amount of every influenced deal the scope touched, once.
    touched_won = family_rows(
        ctx,
        "influence",
        # kx_attr holds each partner that touched a won influenced deal once (the touches
        # joined to their deals are ~2.5x as many rows, read from a 3M-row table at 1M deals).
        "SELECT a.partner_id, a.js, a.deal_id, a.deal_cents AS cents, a.closed_mi FROM kx_attr a "
        # Before the DISTINCT below, which the planner does not push the months through.
        f"WHERE a.seg = 'i' AND {in_periods(ctx, 'a.closed_mi')}",
        "partner_id, js, deal_id, cents, closed_mi",
    )
    additive(
        ctx,
        ["inf_c", "inf_n"],
        "SELECT DISTINCT sign, scope, sid, deal_id, cents, closed_mi "
        f"FROM ({scoped(ctx, touched_won, PARTNERS)}) y",
        ["SUM(sign * cents)", "SUM(sign)"],
        mi="closed_mi",
    )
    # Attributed revenue: sums of the partners' cents (a join source's is its partners' sum).
    attributed = family_rows(
        ctx, "attribution", "SELECT * FROM kx_attr", "deal_id, partner_id, js, closed_mi, cents"
    )
    additive(ctx, ["attr_c"], scoped(ctx, attributed, PARTNERS), ["SUM(sign * cents)"], mi="closed_mi")
    # Sales cycle medians (won deals, whole local days created -> closed), from the rows; patched
    # cells recompute the medians that changed themselves.
    if not ctx.result.cells:
        for column, rows in median_rows(ctx).items():
            median(ctx, column, rows)


def recruitment(ctx: RunContext) -> None:
    """The recruitment funnel: applications by applied month; cohorts (joined, activated within
    the window, provisional) and time to first sale by join month (the partners, cohorts and
    first_sales families)."""
    applications = family_rows(
        ctx,
        "partners",
        "SELECT id AS partner_id, js, joined, applied_mi FROM kx_partner",
        "id AS partner_id, js, joined, applied_mi",
    )
    additive(
        ctx,
        ["apps_n", "apps_ok"],
        scoped(ctx, applications, GROUPS),
        ["SUM(sign)", "SUM(CASE WHEN joined IS NOT NULL THEN sign ELSE 0 END)"],
        mi="applied_mi",
    )
    cohort = family_rows(
        ctx,
        "cohorts",
        lifecycle.cohort_rows(ctx, plain, ctx.as_of),
        "partner_id, js, joined_mi, activated, inside",
    )
    additive(
        ctx,
        ["joined_n", "activated_n", "prov"],
        scoped(ctx, cohort, GROUPS),
        ["SUM(sign)", "SUM(sign * activated)", "SUM(sign * inside)"],
        mi="joined_mi",
    )
    # Time to first sale, keyed by the cohort (join period); partners without a sale left out.
    ttfs = family_rows(
        ctx, "first_sales", lifecycle.first_sale_rows(ctx, plain), "partner_id, js, joined_mi, has_sale, v"
    )
    additive(
        ctx,
        ["fs_n", "ttfs_sum"],
        scoped(ctx, ttfs, ALL),
        ["SUM(sign * has_sale)", "SUM(sign * v)"],
        mi="joined_mi",
    )


def active_partners(ctx: RunContext) -> None:
    """Active partners: a qualifying activity within the 90 days ending on the period's last day.
    kx_actm keeps each partner's latest activity per month, so months end_mi-3..end_mi suffice."""
    activities = family_rows(ctx, "activities", "SELECT * FROM kx_actm", "partner_id, js, mi, maxd")
    insert(
        ctx,
        ["active_n"],
        f"""SELECT scope, sid, grain, pidx, SUM(sign) FROM (
            SELECT DISTINCT x.sign, x.scope, x.sid, pe.grain, pe.pidx, x.partner_id
            FROM kx_period pe JOIN ({scoped(ctx, activities, GROUPS)}) x
              ON x.mi BETWEEN pe.end_mi - 3 AND pe.end_mi AND x.maxd >= pe.window_start) u
        GROUP BY scope, sid, grain, pidx""",
    )


def pipeline(ctx: RunContext) -> None:
    """Registrations submitted, approved and rejected in the period (the registrations family)."""
    reg_columns = "partner_id, js, status, submitted_mi, decided_mi"
    reg_rows = family_rows(ctx, "registrations", f"SELECT {reg_columns} FROM kx_reg", reg_columns)
    additive(ctx, ["leads_n"], scoped(ctx, reg_rows, ALL), ["SUM(sign)"], mi="submitted_mi")
    additive(
        ctx,
        ["regs_ok", "regs_rej"],
        f"SELECT * FROM ({scoped(ctx, reg_rows, ALL)}) r WHERE r.status IN ('approved', 'rejected')",
        [
            "SUM(CASE WHEN status = 'approved' THEN sign ELSE 0 END)",
            "SUM(CASE WHEN status = 'rejected' THEN sign ELSE 0 END)",
        ],
        mi="decided_mi",
    )


def opportunities_influenced(ctx: RunContext) -> None:
    """Distinct deals with a counting touch in the period, per scope (the opportunities family).

    kx_opp holds each (partner, deal, month) once; a row also counts for its quarter (year) when
    it is the deal's first month touched in that quarter (year), so one sorted pass gives all
    three grains and the quarters and years roll up from months like a sum. An incremental run
    keeps the months of whole periods: a deal's earlier month in the same period stays. Patching,
    each sign's rows are a deal's touches of their own (now, before), apart."""
    chunk, patching = ctx.chunk, ctx.result.cells
    opp_columns = "partner_id, js, deal_id, touched_mi"
    touches = family_rows(ctx, "opportunities", f"SELECT {opp_columns} FROM kx_touch", opp_columns)
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
        if scope_in_chunk(ctx, scope)
    )
    insert(
        ctx,
        ["opp_inf"],
        f"""SELECT m.scope, m.sid, g.grain, g.pidx,
            SUM(CASE g.grain WHEN 'month' THEN m.n WHEN 'quarter' THEN m.nq ELSE m.ny END)
        FROM ({monthly}) m
        JOIN kx_grain g ON g.mi = m.mi
        GROUP BY m.scope, m.sid, g.grain, g.pidx""",
    )


def costs(ctx: RunContext) -> None:
    """Counted cost, and of it the commission and MDF categories: program all; partner its tagged
    costs; join source tagged with it or its partners, each cost once (the costs family)."""
    chunk = ctx.chunk
    rows = family_rows(
        ctx, "costs", "SELECT * FROM kx_cost", "id, cents, mi, partner_id, tag_js, partner_js, cat"
    )
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
    of = "SUM(CASE WHEN cat = '{}' THEN sign * cents ELSE 0 END)".format
    additive(
        ctx,
        ["cost_c", "comm_c", "mdf_c"],
        " UNION ALL ".join(cost_rows),
        ["SUM(sign * cents)", of(CostEntry.Category.COMMISSION), of(CostEntry.Category.MDF)],
    )


def mdf_return(ctx: RunContext) -> None:
    """Revenue of the won deals linked to the scope's counted MDF costs (directly or through a
    registration's deal), in the deal's close period, each deal once per scope (the mdf_deals
    family): program all; partner the costs tagged with it; join source those tagged with it or
    with one of its partners, as for the costs."""
    chunk = ctx.chunk
    rows = family_rows(
        ctx,
        "mdf_deals",
        "SELECT l.cost_id, l.deal_id, c.partner_id, c.tag_js, c.partner_js, d.cents, d.closed_mi "
        "FROM kx_link l JOIN kx_cost c ON c.id = l.cost_id JOIN kx_deal d ON d.id = l.deal_id "
        f"WHERE c.cat = '{CostEntry.Category.MDF}' AND d.status = 'won'",
        "cost_id, deal_id, partner_id, tag_js, partner_js, cents, closed_mi",
    )
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
    # Each deal once per scope and sign (patching: the affected deals' rows now and before).
    additive(
        ctx,
        ["mdfrev_c"],
        "SELECT DISTINCT sign, scope, sid, deal_id, cents, closed_mi "
        f"FROM ({' UNION ALL '.join(deal_rows)}) y",
        ["SUM(sign * cents)"],
        mi="closed_mi",
    )


def new_customers(ctx: RunContext) -> None:
    """New customers (kx_newcust) in the period of their first won deal."""
    new_customers = family_rows(
        ctx, "new_customers", "SELECT * FROM kx_newcust", "deal_id, partner_id, js, closed_mi"
    )
    additive(ctx, ["newcust_n"], scoped(ctx, new_customers, ALL), ["SUM(sign)"], mi="closed_mi")


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
