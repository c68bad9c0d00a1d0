"""Changed periods: the contribution families, and the periods whose rows differ from the previous run."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from kpis.engine import lifecycle, state
from kpis.engine.context import RunContext
from kpis.engine.tables import set_aside, state_table
from kpis.metrics import Grain
from kpis.models import CostEntry

# An incremental run that finds this share of the months changed recomputes every period.
MOST_MONTHS_CHANGED = 0.75


def plain(table: str) -> str:
    return table


def affected_touches(touches: str):
    """The fact tables of the contribution families' rows of the affected deals only: their touches
    from the table `touches` (kx_aff_touch before patching, kx_aff_touch_now after)."""
    return lambda table: touches if table == "kx_touch_all" else table


def multiset_difference(names: str, rows: str, other: str) -> str:
    """The rows (`names` columns) that `rows` and `other`, two SELECTs of those columns, do not
    hold equally often: one grouped pass over both, no sort or join of either side."""
    return (
        f"SELECT {names} FROM (SELECT {names}, 1 AS side FROM ({rows}) a "
        f"UNION ALL SELECT {names}, -1 AS side FROM ({other}) b) u "
        f"GROUP BY {names} HAVING SUM(side) <> 0"
    )


@dataclass(frozen=True)
class Contribution:
    """One family of rows the components read (see KpiComputation._contributions): `columns` over
    `rows` (a FROM clause) filtered by `where`, landing in the months of the `months` columns and the
    `reach` after. `key` is the column naming the fact each row comes from (a deal, a partner...):
    a run that patched its facts (delta facts) compares only the rows whose key is in `keys`, the
    facts it patched; None for a family compared whole (targets)."""

    columns: str  # column references ("alias.column" or "alias.column AS name"), comma-separated
    rows: str
    months: tuple[str, ...]
    reach: int = 0
    where: str = "1 = 1"
    key: str | None = None
    keys: str | None = None  # the table of the affected keys (column k)
    name: str = ""

    def names(self) -> str:
        return ", ".join(column.split(" AS ")[-1].split(".")[-1] for column in self.columns.split(", "))

    def source(self, *, affected_only: bool = False) -> str:
        """The FROM clause of the family's rows (`affected_only`: of the patched facts' rows)."""
        where = self.where
        if affected_only and self.key is not None:
            where = f"({where}) AND {self.key} IN (SELECT k FROM {self.keys})"
        return f"{self.rows} WHERE {where}"

    def changed_months(self, before: Contribution, *, affected_only: bool = False) -> str:
        """The months of the rows that differ, as multisets, from the same family `before` (over the
        previous run's tables): one grouped pass over both, no sort of either side."""
        names = self.names()
        diff = multiset_difference(
            names,
            f"SELECT {self.columns} FROM {self.source(affected_only=affected_only)}",
            f"SELECT {before.columns} FROM {before.source()}",
        )
        offsets = " UNION ALL ".join(
            f"SELECT {i} AS m, {r} AS r" for i in range(len(self.months)) for r in range(self.reach + 1)
        )
        month = "CASE o.m " + " ".join(f"WHEN {i} THEN x.{m}" for i, m in enumerate(self.months)) + " END"
        return (
            f"SELECT DISTINCT {month} + o.r FROM ({diff}) x CROSS JOIN ({offsets}) o "
            f"WHERE {month} IS NOT NULL"
        )


def contributions(ctx: RunContext, table, as_of: date) -> list[Contribution]:
    """The rows every component reads, read from the fact tables `table(name)` names, as a run
    with that as-of date reads them.

    Each component of a period is computed from the rows of one of these families that land in
    the period's months (plus, for active partners, the three months before its last one), and
    from nothing else but the period itself. So a period whose months hold no row that differs
    between the previous run's facts and this run's has the values it had. A component added to
    `_components` must have its rows here; the incremental tests compare with full runs.
    Deals come first: the likeliest to have changed in most months (then the comparison stops
    early, see `_restrict_to_changed_periods`).
    """
    deals, partners, accounts = "kx_aff_deal", "kx_aff_partner", "kx_aff_account"
    return [
        # Revenue, win rates and sales cycles by segment; sourced deals per partner and source.
        Contribution(
            "d.id, d.status, d.seg, d.cents, d.sp, p.js AS sp_js, d.created_d, d.closed_d, d.closed_mi",
            f"{table('kx_deal')} d LEFT JOIN {table('kx_partner')} p ON p.id = d.sp",
            ("closed_mi",),
            where="d.status IN ('won', 'lost')",
            key="d.id",
            keys=deals,
            name="deals",
        ),
        Contribution(
            "a.deal_id, a.partner_id, a.js, a.closed_mi, a.cents",
            f"{table('kx_attr')} a",
            ("closed_mi",),
            key="a.deal_id",
            keys=deals,
            name="attribution",
        ),
        # Applications, cohorts (activation, provisional), time to first sale.
        Contribution(
            "p.id, p.js, p.joined, p.applied_mi",
            f"{table('kx_partner')} p",
            ("applied_mi",),
            key="p.id",
            keys=partners,
            name="partners",
        ),
        Contribution(
            "c.partner_id, c.js, c.joined_mi, c.activated, c.inside",
            f"({lifecycle.cohort_rows(ctx, table, as_of)}) c",
            ("joined_mi",),
            key="c.partner_id",
            keys=partners,
            name="cohorts",
        ),
        Contribution(
            "f.partner_id, f.js, f.joined_mi, f.has_sale, f.v",
            f"({lifecycle.first_sale_rows(ctx, table)}) f",
            ("joined_mi",),
            key="f.partner_id",
            keys=partners,
            name="first_sales",
        ),
        # Active partners: a period counts the activities of its last month and the 3 before.
        Contribution(
            "a.partner_id, a.js, a.mi, a.maxd",
            f"{table('kx_actm')} a",
            ("mi",),
            reach=3,
            key="a.partner_id",
            keys=partners,
            name="activities",
        ),
        Contribution(
            "r.id, r.partner_id, r.js, r.status, r.submitted_mi, r.decided_mi",
            f"{table('kx_reg')} r",
            ("submitted_mi", "decided_mi"),
            key="r.id",
            keys="kx_aff_reg",
            name="registrations",
        ),
        Contribution(
            "c.id, c.cents, c.mi, c.partner_id, c.tag_js, c.partner_js, c.cat",
            f"{table('kx_cost')} c",
            ("mi",),
            key="c.id",
            keys="kx_aff_cost",
            name="costs",
        ),
        Contribution(
            "n.deal_id, n.partner_id, n.js, n.closed_mi",
            f"{table('kx_newcust')} n",
            ("closed_mi",),
            key="n.account_id",
            keys=accounts,
            name="new_customers",
        ),
        # MDF return: the won deals linked to counted MDF costs, in their close month. Keyed by
        # the deal (a deal counts once per scope, however many costs link it): the affected
        # deals include those linked to an affected cost or registration (delta_facts).
        Contribution(
            "l.cost_id, l.deal_id, c.partner_id, c.tag_js, c.partner_js, d.cents, d.closed_mi",
            f"{table('kx_link')} l JOIN {table('kx_cost')} c ON c.id = l.cost_id "
            f"JOIN {table('kx_deal')} d ON d.id = l.deal_id",
            ("closed_mi",),
            where=f"c.cat = '{CostEntry.Category.MDF}' AND d.status = 'won'",
            key="l.deal_id",
            keys=deals,
            name="mdf_deals",
        ),
        # Targets (and their progress) are rows of their own period; few, compared whole.
        Contribution(
            "g.partner_id, g.join_source_id, g.grain, g.period_start, g.metric, g.value, g.start_mi",
            f"{table('kx_tgt')} g",
            ("start_mi",),
            name="targets",
        ),
        # The touches last: the largest families.
        # Influenced revenue: won influenced deals with the partners (and sources) that touched them.
        Contribution(
            "t.partner_id, t.js, d.id AS deal_id, d.cents, d.closed_mi",
            f"{table('kx_touch_all')} t JOIN {table('kx_deal')} d ON d.id = t.deal_id",
            ("closed_mi",),
            where="t.late = 0 AND d.status = 'won' AND d.seg = 'i'",
            key="t.deal_id",
            keys=deals,
            name="influence",
        ),
        # Opportunities influenced: the counting touches by month.
        Contribution(
            "t.partner_id, t.js, t.deal_id, t.touched_mi",
            f"{table('kx_touch_all')} t",
            ("touched_mi",),
            where="t.late = 0",
            key="t.deal_id",
            keys=deals,
            name="opportunities",
        ),
    ]


def restrict_to_changed_periods(ctx: RunContext) -> None:
    """Incremental run: trim kx_grain and kx_period to the periods whose values may have changed
    since the previous run, and list in kx_pubper the published periods to replace (those plus
    the periods that left the run's range). Runs on the full facts, before the components.

    A changed period: one holding a month where some contribution row differs between the
    previous run's facts and this run's (rows compared as multisets, so a deletion, a move to
    another month or partner, and an as-of-dependent flag all show), or a period new to the
    range. A new or removed join source, a renamed key, or a state computed by another
    CODE_VERSION or with other settings may change rows of every period: then nothing is
    trimmed. Nor is it once most months have changed (MOST_MONTHS_CHANGED).
    """
    if ctx.previous is None:
        return
    # The previous run's small tables were set aside when the facts were patched in place.
    old = set_aside if ctx.result.delta else functools.partial(state_table, ctx.previous)
    keys_changed = labels_changed(ctx, old)
    (previous_as_of, previous_code), *_ = ctx.fetch(f"SELECT as_of, code FROM {old('kx_state')}")
    if keys_changed or previous_code != state.code_and_settings(ctx):
        return
    # The previous run's rows as that run read them: with its own as-of date.
    previous_as_of = date.fromisoformat(str(previous_as_of)[:10])
    ctx.exec(f"CREATE {ctx.fact_table('kx_dirty_mi')} (mi INTEGER)")
    if ctx.result.delta:
        # Only the patched facts' rows can differ; their previous rows were kept before patching.
        pairs = [
            (
                now,
                Contribution(now.names(), f"kx_before_{i}", now.months, now.reach),
            )
            for i, now in enumerate(contributions(ctx, plain, ctx.as_of))
        ]
    else:
        pairs = zip(
            contributions(ctx, plain, ctx.as_of), contributions(ctx, old, previous_as_of), strict=True
        )
    first, last = ctx.result.first_month, ctx.result.last_month
    for now, before in pairs:
        ctx.exec(f"INSERT INTO kx_dirty_mi (mi) {now.changed_months(before, affected_only=ctx.result.delta)}")
        dirty = ctx.fetch(f"SELECT COUNT(DISTINCT mi) FROM kx_dirty_mi WHERE mi BETWEEN {first} AND {last}")
        if dirty[0][0] >= MOST_MONTHS_CHANGED * (last - first + 1):
            # Comparing the other families would cost more than the few periods it could spare.
            return
    # A changed month's month, quarter and year, wherever it lies: a month that has just left
    # the range still changes its quarter and year if they stay.
    ctx.exec(
        f"""CREATE {ctx.fact_table("kx_dirty_per")} AS
        SELECT a.grain, a.pidx FROM kx_allper a
        WHERE EXISTS (SELECT 1 FROM kx_dirty_mi d WHERE a.pidx = CASE a.grain
                          WHEN '{Grain.MONTH}' THEN d.mi WHEN '{Grain.QUARTER}' THEN d.mi / 3
                          ELSE d.mi / 12 END)
        UNION SELECT grain, pidx FROM (SELECT grain, pidx FROM kx_allper
                                       EXCEPT SELECT grain, pidx FROM {old("kx_allper")}) n"""
    )
    ctx.exec(
        f"""CREATE {ctx.fact_table("kx_pubper")} AS
        SELECT a.grain, a.label FROM kx_allper a
        JOIN kx_dirty_per d ON d.grain = a.grain AND d.pidx = a.pidx
        UNION SELECT o.grain, o.label FROM {old("kx_allper")} o
        WHERE NOT EXISTS (SELECT 1 FROM kx_allper a WHERE a.grain = o.grain AND a.pidx = o.pidx)"""
    )
    for table in ("kx_grain", "kx_period"):
        ctx.exec(
            f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM kx_dirty_per d "
            f"WHERE d.grain = {table}.grain AND d.pidx = {table}.pidx)"
        )
    ctx.analyze("kx_grain", "kx_period", "kx_pubper")
    ctx.result.restricted = True
    ctx.result.periods_recomputed = ctx.fetch("SELECT COUNT(*) FROM kx_pubper")[0][0]


def labels_changed(
    ctx: RunContext, old: Callable[[str], str], *, periods: bool = False, new_keys: bool = False
) -> bool:
    """Whether the previous state's labels differ from this run's: a join source new or gone, a
    published key renamed or gone (`new_keys`: or new), and (`periods`) a period label new or
    gone. `old(name)` names the previous state's table `name`. EXCEPT hashes; an EXISTS over a
    join would plan a nested loop."""
    tests = [
        f"EXISTS (SELECT id FROM kx_js EXCEPT SELECT id FROM {old('kx_js')})",
        f"EXISTS (SELECT id FROM {old('kx_js')} EXCEPT SELECT id FROM kx_js)",
        f"EXISTS (SELECT scope, id, key FROM {old('kx_keys')} EXCEPT SELECT scope, id, key FROM kx_keys)",
    ]
    if new_keys:
        tests.append(
            f"EXISTS (SELECT scope, id, key FROM kx_keys EXCEPT SELECT scope, id, key FROM {old('kx_keys')})"
        )
    if periods:
        tests += [
            f"EXISTS (SELECT grain, pidx, label FROM kx_allper "
            f"EXCEPT SELECT grain, pidx, label FROM {old('kx_allper')})",
            f"EXISTS (SELECT grain, pidx, label FROM {old('kx_allper')} "
            "EXCEPT SELECT grain, pidx, label FROM kx_allper)",
        ]
    return bool(ctx.fetch("SELECT " + " OR ".join(tests))[0][0])
