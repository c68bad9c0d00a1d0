"""Stage 2, periods: the range of months and the month -> month/quarter/year map (kx_grain, kx_period)."""

from __future__ import annotations

from kpis.engine.context import RunContext
from kpis.metrics import Grain
from kpis.periods import Period, active_window_start, month_index
from program.validation import earliest_month_index, latest_month_index

# KPIS.md: active partners look back over the 90 calendar days that end on the period's last day.
ACTIVE_LOOKBACK_DAYS = 90


def fact_bounds(ctx: RunContext, *, affected: str | None = None) -> tuple[int | None, int | None]:
    """(first, last) month index of the fact rows (not targets): of them all, or (`affected`:
    "before" or "after" patching) of the rows of the affected keys."""
    deals, touches, regs, partners, costs = "kx_deal", "kx_touch", "kx_reg", "kx_partner", "kx_cost"
    if affected is not None:
        when = "before" if affected == "before" else "now"
        deals, touches = f"kx_aff_deal_{when}", f"kx_aff_count_{when}"
        regs = "kx_reg WHERE id IN (SELECT k FROM kx_aff_reg)"
        partners = "kx_partner WHERE id IN (SELECT k FROM kx_chg_partner)"
        costs = "kx_cost WHERE id IN (SELECT k FROM kx_aff_cost)"
    return ctx.fetch(
        f"""SELECT MIN(lo), MAX(hi) FROM (
            SELECT MIN(created_mi) AS lo, MAX(COALESCE(closed_mi, created_mi)) AS hi FROM {deals}
            UNION ALL SELECT MIN(touched_mi), MAX(touched_mi) FROM {touches}
            UNION ALL SELECT MIN(submitted_mi), MAX(COALESCE(decided_mi, submitted_mi)) FROM {regs}
            UNION ALL SELECT MIN(applied_mi), MAX(COALESCE(joined_mi, applied_mi)) FROM {partners}
            UNION ALL SELECT MIN(mi), MAX(mi) FROM {costs}
        ) b"""
    )[0]


def patched_fact_bounds(ctx: RunContext) -> tuple[int | None, int | None] | None:
    """The fact rows' bounds after patching, from the previous run's and the affected rows'
    before and after (None: one of them cannot tell, and the facts must be scanned).

    A bound stays where it was unless an affected row now lies at or beyond it (then that row
    is the bound), or it was held by an affected row that moved inward (then only a scan tells
    whether another row still holds it)."""
    if not ctx.affected_bounds:
        return None
    previous = ctx.fetch("SELECT first_mi, last_mi FROM kx_prev_state")[0]
    before, after = ctx.affected_bounds["before"], ctx.affected_bounds["after"]
    bounds = []
    # The first month is the least, the last the greatest: negated, the same rule finds both.
    for i, sign in ((0, 1), (1, -1)):
        was_bound, had, has = (None if x is None else sign * x for x in (previous[i], before[i], after[i]))
        if was_bound is None:
            bound = has  # no fact row before: every row now is an affected one
        elif has is not None and has <= was_bound:
            bound = has
        elif had is None or had > was_bound:
            bound = was_bound
        else:
            return None
        bounds.append(None if bound is None else sign * bound)
    return bounds[0], bounds[1]


def build(ctx: RunContext) -> None:
    as_of_mi = month_index(ctx.as_of)
    facts = patched_fact_bounds(ctx) or fact_bounds(ctx)
    ctx.fact_month_bounds = facts
    targets = ctx.fetch("SELECT MIN(start_mi), MAX(start_mi) FROM kx_tgt")[0]
    first = min(x for x in (facts[0], targets[0], as_of_mi) if x is not None)
    last = max(x for x in (facts[1], targets[1], as_of_mi) if x is not None)
    # Whatever the data holds (rows written before the validation layer, or by hand), periods
    # stay within the plausible range; facts outside it fall in no period (docs/kpis.md).
    first = max(first, min(earliest_month_index(), as_of_mi))
    last = min(last, max(latest_month_index(), as_of_mi))
    ctx.result.first_month, ctx.result.last_month = first, last

    grain_rows, periods = [], {}
    for mi in range(first, last + 1):
        for grain, index in ((Grain.MONTH, mi), (Grain.QUARTER, mi // 3), (Grain.YEAR, mi // 12)):
            grain_rows.append(f"('{grain}', {mi}, {index})")
            periods[(grain, index)] = Period(grain, index)
    s = ctx.sql
    ctx.exec(f"CREATE {ctx.fact_table('kx_grain')} (grain VARCHAR(8), mi INTEGER, pidx INTEGER)")
    ctx.exec("INSERT INTO kx_grain (grain, mi, pidx) VALUES " + ", ".join(grain_rows))
    ctx.exec("CREATE INDEX kx_grain_mi ON kx_grain (mi)")
    ctx.exec(
        f"CREATE {ctx.fact_table('kx_period')} (grain VARCHAR(8), pidx INTEGER, label VARCHAR(7), "
        "start_d DATE, end_mi INTEGER, window_start DATE)"
    )
    values = ", ".join(
        f"('{p.grain}', {p.index}, '{p.label}', {s.date_literal(p.start)}, {p.last_month_index}, "
        f"{s.date_literal(active_window_start(p.end, ACTIVE_LOOKBACK_DAYS))})"
        for p in periods.values()
    )
    ctx.exec(f"INSERT INTO kx_period (grain, pidx, label, start_d, end_mi, window_start) VALUES {values}")
    # Every period of the run, kept when an incremental run trims kx_grain and kx_period.
    ctx.exec(f"CREATE {ctx.fact_table('kx_allper')} AS SELECT grain, pidx, label FROM kx_period")
    ctx.analyze("kx_grain", "kx_period")
    ctx.result.periods = ctx.result.periods_recomputed = len(periods)
