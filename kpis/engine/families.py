"""The KPI families: one declaration per family of fact rows the components are computed from.

A family (`Family`) names its rows (columns over the fact tables, the months they land in, the
key of the fact each row comes from) and the aggregates computed from them (`Aggregate`: which
components, how the rows are read in a full computation, grouped by which scopes, summed how).
Everything else is generated from `FAMILIES`:
- a full or restricted computation, a chunk's too (`components.build`): each aggregate's SQL
  over its rows, expanded to the scopes of the chunk;
- an incremental run's comparison with the previous run (`incremental.changed_periods`): the
  months of the family's rows that differ;
- patched cells (`incremental.patching`): the affected keys' rows now and before
  (kx_before_<i>, kx_signed_<name>), which the same aggregates read with a sign.
So a metric's component is defined once. Adding one: docs/kpis.md, "How to add a KPI".

This module imports nothing of the engine at load time (tables.py names the temp tables after
the families): the row sources that need the lifecycle SQL import it when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from kpis.models import CostEntry

if TYPE_CHECKING:
    from kpis.engine.context import RunContext

# `table(name)`: the name of the fact table `name` to read (this run's, the previous run's...).
Table = Callable[[str], str]


def plain(table: str) -> str:
    return table


def affected_touches(touches: str) -> Table:
    """The fact tables of the families' rows of the affected deals only: their touches from the
    table `touches` (kx_aff_touch before patching, kx_aff_touch_now after)."""
    return lambda table: touches if table == "kx_touch_all" else table


def in_periods(ctx: RunContext, month: str) -> str:
    """The condition keeping an incremental run's rows to the months of the periods it
    recomputes, before they are grouped. Whole periods: kx_grain holds every month of each
    (and a changed month's quarter and year are recomputed too)."""
    return f"{month} IN (SELECT mi FROM kx_grain)" if ctx.result.restricted else "1 = 1"


def multiset_difference(names: str, rows: str, other: str) -> str:
    """The rows (`names` columns) that `rows` and `other`, two SELECTs of those columns, do not
    hold equally often: one grouped pass over both, no sort or join of either side."""
    return (
        f"SELECT {names} FROM (SELECT {names}, 1 AS side FROM ({rows}) a "
        f"UNION ALL SELECT {names}, -1 AS side FROM ({other}) b) u "
        f"GROUP BY {names} HAVING SUM(side) <> 0"
    )


# The scopes an aggregate is counted for.
ALL = ("program", "partner", "join_source")
GROUPS = ("program", "join_source")
PARTNERS = ("partner", "join_source")


@dataclass(frozen=True)
class Aggregate:
    """Components computed from a family's rows.

    `full(ctx)`: the rows a full (or restricted) computation reads (a cheaper source than the
    family's own rows is fine: the equivalence tests compare); when patching cells the family's
    signed rows are read instead, as `columns` (the family's column names, `f.*` all of them)
    filtered by `where`. `shape` says how the rows become components (components.SHAPES):
    - "sums": per (scope, sid, month) `sums` (aggregates over the signed rows, e.g.
      `SUM(sign * cents)`) rolled up to every grain, the month being the `month` column. The rows
      are expanded to the `scopes` by `expand` (components.EXPANDERS: "scoped" copies a row per
      scope with the partner_id / js column as its id), then kept once per sign, scope, sid and
      `distinct` columns if given (a deal counted once per scope), then filtered by `having`.
    - "medians": the median components, from the rows (full computations; patched cells
      recompute a changed cell's median themselves, `incremental.patching`).
    - "active": active partners (the 90-day window at each period's end).
    - "opportunities": distinct deals touched per period (first month of a deal per grain).
    """

    components: tuple[str, ...]
    full: Callable[[RunContext], str] | None = None
    columns: str = "f.*"
    where: str = "1 = 1"
    shape: str = "sums"
    sums: tuple[str, ...] = ()
    month: str = "mi"
    scopes: tuple[str, ...] = ALL
    expand: str = "scoped"
    distinct: str | None = None
    having: str | None = None


@dataclass(frozen=True)
class Contribution:
    """A family's rows as one run reads them: `columns` over `rows` (a FROM clause) filtered by
    `where`, landing in the months of the `months` columns and the `reach` months after. `key`
    names the fact each row comes from; a run that patched its facts reads only the rows whose
    key is in `keys` (the table of the affected keys, column k). None: compared whole."""

    columns: str  # column references ("alias.column" or "alias.column AS name"), comma-separated
    rows: str
    months: tuple[str, ...]
    reach: int = 0
    where: str = "1 = 1"
    key: str | None = None
    keys: str | None = None
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


@dataclass(frozen=True)
class Family:
    """One family of rows: `columns` over `rows(ctx, table, as_of)` (a FROM clause over the fact
    tables `table` names, as a run with that as-of date reads them) filtered by `where`; each row
    lands in the months of its `months` columns (and, for a window, the `reach` months after).
    Each component of a period is computed from the rows of one family that land in the period's
    months, and from nothing else but the period: so a period whose months hold no changed row
    keeps its values. `key` is the column naming the fact a row comes from and `keys` the table
    of the affected keys of that kind (incremental.delta_facts); None for a family compared whole
    (targets). `aggregates`: the components computed from the family's rows."""

    name: str
    columns: str
    rows: Callable[[RunContext, Table, date], str]
    months: tuple[str, ...]
    aggregates: tuple[Aggregate, ...] = ()
    reach: int = 0
    where: str = "1 = 1"
    key: str | None = None
    keys: str | None = None

    def contribution(self, ctx: RunContext, table: Table, as_of: date) -> Contribution:
        return Contribution(
            self.columns,
            self.rows(ctx, table, as_of),
            self.months,
            self.reach,
            self.where,
            self.key,
            self.keys,
            self.name,
        )


def _won(seg: str | None, what: str) -> str:
    cond = "status = 'won'" + (f" AND seg = '{seg}'" if seg else "")
    return f"SUM(CASE WHEN {cond} THEN sign * {what} ELSE 0 END)"


def _lost(seg: str) -> str:
    return f"SUM(CASE WHEN status = 'lost' AND seg = '{seg}' THEN sign ELSE 0 END)"


def _cohort_rows(ctx: RunContext, table: Table, as_of: date) -> str:
    from kpis.engine import lifecycle  # noqa: PLC0415 - lifecycle imports the tables, which import this

    return lifecycle.cohort_rows(ctx, table, as_of)


def _first_sale_rows(ctx: RunContext, table: Table) -> str:
    from kpis.engine import lifecycle  # noqa: PLC0415 - as above

    return lifecycle.first_sale_rows(ctx, table)


_CLOSED = "d.status IN ('won', 'lost')"
_LOST = "SUM(CASE WHEN status = 'lost' THEN sign ELSE 0 END)"
_REGISTRATION = "partner_id, js, status, submitted_mi, decided_mi"
_TOUCH = "partner_id, js, deal_id, touched_mi"
_MDF, _COMMISSION = CostEntry.Category.MDF, CostEntry.Category.COMMISSION


def _of_category(category: str) -> str:
    return f"SUM(CASE WHEN cat = '{category}' THEN sign * cents ELSE 0 END)"


# The families, in the order an incremental run compares them with the previous run's: deals
# first, the likeliest to have changed in most months (the comparison then stops early,
# changed_periods.MOST_MONTHS_CHANGED), the touches, the largest, last. The components are
# computed in this order too.
FAMILIES: tuple[Family, ...] = (
    # Revenue, win rates and sales cycles by segment; sourced deals per partner and source.
    Family(
        "deals",
        "d.id, d.status, d.seg, d.cents, d.sp, p.js AS sp_js, d.created_d, d.closed_d, d.closed_mi",
        lambda ctx, table, as_of: f"{table('kx_deal')} d LEFT JOIN {table('kx_partner')} p ON p.id = d.sp",
        ("closed_mi",),
        (
            Aggregate(
                ("won_c", "won_n", "src_c", "src_n", "inf_c", "inf_n", "dir_c", "dir_n")
                + ("lost_src", "lost_inf", "lost_dir"),
                lambda ctx: f"SELECT d.* FROM kx_deal d WHERE {_CLOSED}",
                sums=(_won(None, "cents"), _won(None, "1"))
                + tuple(_won(seg, what) for seg in ("s", "i", "d") for what in ("cents", "1"))
                + (_lost("s"), _lost("i"), _lost("d")),
                month="closed_mi",
                scopes=("program",),
                expand="program",
            ),
            Aggregate(
                ("src_c", "src_n", "lost_src"),
                lambda ctx: (
                    "SELECT d.sp AS partner_id, p.js, d.status, d.cents, d.closed_mi FROM kx_deal d "
                    f"JOIN kx_partner p ON p.id = d.sp WHERE d.sp IS NOT NULL AND {_CLOSED}"
                ),
                "sp AS partner_id, sp_js AS js, status, cents, closed_mi",
                "sp IS NOT NULL",
                sums=(
                    _won(None, "cents"),
                    _won(None, "1"),
                    "SUM(CASE WHEN status = 'lost' THEN sign ELSE 0 END)",
                ),
                month="closed_mi",
                scopes=PARTNERS,
            ),
            # Sales cycles (won deals, whole local days created -> closed), per segment.
            Aggregate(("cyc_src_med", "cyc_inf_med", "cyc_dir_med"), shape="medians"),
        ),
        where="d.status IN ('won', 'lost')",
        key="d.id",
        keys="kx_aff_deal",
    ),
    # Attributed revenue: sums of the partners' cents (a join source's is its partners' sum).
    Family(
        "attribution",
        "a.deal_id, a.partner_id, a.js, a.closed_mi, a.cents",
        lambda ctx, table, as_of: f"{table('kx_attr')} a",
        ("closed_mi",),
        (
            Aggregate(
                ("attr_c",),
                lambda ctx: "SELECT * FROM kx_attr",
                "deal_id, partner_id, js, closed_mi, cents",
                sums=("SUM(sign * cents)",),
                month="closed_mi",
                scopes=PARTNERS,
            ),
        ),
        key="a.deal_id",
        keys="kx_aff_deal",
    ),
    # Applications by applied month.
    Family(
        "partners",
        "p.id, p.js, p.joined, p.applied_mi",
        lambda ctx, table, as_of: f"{table('kx_partner')} p",
        ("applied_mi",),
        (
            Aggregate(
                ("apps_n", "apps_ok"),
                lambda ctx: "SELECT id AS partner_id, js, joined, applied_mi FROM kx_partner",
                "id AS partner_id, js, joined, applied_mi",
                sums=("SUM(sign)", "SUM(CASE WHEN joined IS NOT NULL THEN sign ELSE 0 END)"),
                month="applied_mi",
                scopes=GROUPS,
            ),
        ),
        key="p.id",
        keys="kx_aff_partner",
    ),
    # Cohorts by join month: joined, activated within the window, still provisional.
    Family(
        "cohorts",
        "c.partner_id, c.js, c.joined_mi, c.activated, c.inside",
        lambda ctx, table, as_of: f"({_cohort_rows(ctx, table, as_of)}) c",
        ("joined_mi",),
        (
            Aggregate(
                ("joined_n", "activated_n", "prov"),
                lambda ctx: _cohort_rows(ctx, plain, ctx.as_of),
                "partner_id, js, joined_mi, activated, inside",
                sums=("SUM(sign)", "SUM(sign * activated)", "SUM(sign * inside)"),
                month="joined_mi",
                scopes=GROUPS,
            ),
        ),
        key="c.partner_id",
        keys="kx_aff_partner",
    ),
    # Time to first sale, keyed by the cohort (join period); partners without a sale left out.
    Family(
        "first_sales",
        "f.partner_id, f.js, f.joined_mi, f.has_sale, f.v",
        lambda ctx, table, as_of: f"({_first_sale_rows(ctx, table)}) f",
        ("joined_mi",),
        (
            Aggregate(
                ("fs_n", "ttfs_sum"),
                lambda ctx: _first_sale_rows(ctx, plain),
                "partner_id, js, joined_mi, has_sale, v",
                sums=("SUM(sign * has_sale)", "SUM(sign * v)"),
                month="joined_mi",
            ),
            Aggregate(("ttfs_med",), shape="medians"),
        ),
        key="f.partner_id",
        keys="kx_aff_partner",
    ),
    # Active partners: a period counts the activities of its last month and the 3 before.
    Family(
        "activities",
        "a.partner_id, a.js, a.mi, a.maxd",
        lambda ctx, table, as_of: f"{table('kx_actm')} a",
        ("mi",),
        (
            Aggregate(
                ("active_n",),
                lambda ctx: "SELECT * FROM kx_actm",
                "partner_id, js, mi, maxd",
                shape="active",
                scopes=GROUPS,
            ),
        ),
        reach=3,
        key="a.partner_id",
        keys="kx_aff_partner",
    ),
    # Registrations submitted, and approved or rejected, in the period.
    Family(
        "registrations",
        "r.id, r.partner_id, r.js, r.status, r.submitted_mi, r.decided_mi",
        lambda ctx, table, as_of: f"{table('kx_reg')} r",
        ("submitted_mi", "decided_mi"),
        (
            Aggregate(
                ("leads_n",),
                lambda ctx: f"SELECT {_REGISTRATION} FROM kx_reg",
                _REGISTRATION,
                sums=("SUM(sign)",),
                month="submitted_mi",
            ),
            Aggregate(
                ("regs_ok", "regs_rej"),
                lambda ctx: f"SELECT {_REGISTRATION} FROM kx_reg",
                _REGISTRATION,
                sums=(
                    "SUM(CASE WHEN status = 'approved' THEN sign ELSE 0 END)",
                    "SUM(CASE WHEN status = 'rejected' THEN sign ELSE 0 END)",
                ),
                month="decided_mi",
                having="r.status IN ('approved', 'rejected')",
            ),
        ),
        key="r.id",
        keys="kx_aff_reg",
    ),
    # Counted cost, and of it the commission and MDF categories: program all; partner its tagged
    # costs; join source tagged with it or its partners, each cost once.
    Family(
        "costs",
        "c.id, c.cents, c.mi, c.partner_id, c.tag_js, c.partner_js, c.cat",
        lambda ctx, table, as_of: f"{table('kx_cost')} c",
        ("mi",),
        (
            Aggregate(
                ("cost_c", "comm_c", "mdf_c"),
                lambda ctx: "SELECT * FROM kx_cost",
                "id, cents, mi, partner_id, tag_js, partner_js, cat",
                sums=("SUM(sign * cents)", _of_category(_COMMISSION), _of_category(_MDF)),
                expand="tagged_costs",
            ),
        ),
        key="c.id",
        keys="kx_aff_cost",
    ),
    # New customers (kx_newcust) in the period of their first won deal.
    Family(
        "new_customers",
        "n.deal_id, n.partner_id, n.js, n.closed_mi",
        lambda ctx, table, as_of: f"{table('kx_newcust')} n",
        ("closed_mi",),
        (
            Aggregate(
                ("newcust_n",),
                lambda ctx: "SELECT * FROM kx_newcust",
                "deal_id, partner_id, js, closed_mi",
                sums=("SUM(sign)",),
                month="closed_mi",
            ),
        ),
        key="n.account_id",
        keys="kx_aff_account",
    ),
    # MDF return: the won deals linked to counted MDF costs (directly or through a registration's
    # deal), in their close month, each deal once per scope (program all; partner the costs
    # tagged with it; join source those tagged with it or one of its partners). Keyed by the deal
    # (a deal counts once per scope, however many costs link it): the affected deals include
    # those linked to an affected cost or registration (delta_facts).
    Family(
        "mdf_deals",
        "l.cost_id, l.deal_id, c.partner_id, c.tag_js, c.partner_js, d.cents, d.closed_mi",
        lambda ctx, table, as_of: (
            f"{table('kx_link')} l JOIN {table('kx_cost')} c ON c.id = l.cost_id "
            f"JOIN {table('kx_deal')} d ON d.id = l.deal_id"
        ),
        ("closed_mi",),
        (
            Aggregate(
                ("mdfrev_c",),
                lambda ctx: (
                    "SELECT l.cost_id, l.deal_id, c.partner_id, c.tag_js, c.partner_js, d.cents, "
                    "d.closed_mi FROM kx_link l JOIN kx_cost c ON c.id = l.cost_id "
                    f"JOIN kx_deal d ON d.id = l.deal_id WHERE c.cat = '{_MDF}' AND d.status = 'won'"
                ),
                "cost_id, deal_id, partner_id, tag_js, partner_js, cents, closed_mi",
                sums=("SUM(sign * cents)",),
                month="closed_mi",
                expand="tagged_deals",
                distinct="deal_id, cents, closed_mi",
            ),
        ),
        where=f"c.cat = '{_MDF}' AND d.status = 'won'",
        key="l.deal_id",
        keys="kx_aff_deal",
    ),
    # Targets (and their progress) are rows of their own period; few, compared whole.
    Family(
        "targets",
        "g.partner_id, g.join_source_id, g.grain, g.period_start, g.metric, g.value, g.start_mi",
        lambda ctx, table, as_of: f"{table('kx_tgt')} g",
        ("start_mi",),
    ),
    # The touches last: the largest families.
    # Influenced revenue: the full amount of every won influenced deal the scope touched, once.
    Family(
        "influence",
        "t.partner_id, t.js, d.id AS deal_id, d.cents, d.closed_mi",
        lambda ctx, table, as_of: f"{table('kx_touch_all')} t JOIN {table('kx_deal')} d ON d.id = t.deal_id",
        ("closed_mi",),
        (
            Aggregate(
                ("inf_c", "inf_n"),
                # kx_attr holds each partner that touched a won influenced deal once (the touches
                # joined to their deals are ~2.5x as many rows, read from a 3M-row table at 1M
                # deals); the months before the DISTINCT, which the planner does not push them through.
                lambda ctx: (
                    "SELECT a.partner_id, a.js, a.deal_id, a.deal_cents AS cents, a.closed_mi "
                    f"FROM kx_attr a WHERE a.seg = 'i' AND {in_periods(ctx, 'a.closed_mi')}"
                ),
                "partner_id, js, deal_id, cents, closed_mi",
                sums=("SUM(sign * cents)", "SUM(sign)"),
                month="closed_mi",
                scopes=PARTNERS,
                distinct="deal_id, cents, closed_mi",
            ),
        ),
        where="t.late = 0 AND d.status = 'won' AND d.seg = 'i'",
        key="t.deal_id",
        keys="kx_aff_deal",
    ),
    # Opportunities influenced: distinct deals with a counting touch in the period, per scope.
    Family(
        "opportunities",
        "t.partner_id, t.js, t.deal_id, t.touched_mi",
        lambda ctx, table, as_of: f"{table('kx_touch_all')} t",
        ("touched_mi",),
        (
            Aggregate(
                ("opp_inf",),
                lambda ctx: f"SELECT {_TOUCH} FROM kx_touch",
                _TOUCH,
                shape="opportunities",
            ),
        ),
        where="t.late = 0",
        key="t.deal_id",
        keys="kx_aff_deal",
    ),
)


# The families whose rows are compared by their keys (every one but those compared whole), whose
# signed rows patched cells read (kx_signed_<name>).
SIGNED_FAMILIES = tuple(family.name for family in FAMILIES if family.key is not None)


def contributions(ctx: RunContext, table: Table, as_of: date) -> list[Contribution]:
    """Every family's rows, read from the fact tables `table(name)` names, as a run with that
    as-of date reads them (kx_before_<i> holds the i-th family's)."""
    return [family.contribution(ctx, table, as_of) for family in FAMILIES]


def family_index(name: str) -> int:
    """The position of the family `name` in FAMILIES (its kx_before_<i> table)."""
    return next(i for i, family in enumerate(FAMILIES) if family.name == name)


def declared_components() -> list[str]:
    """The components the families compute (a test checks that they are exactly tables.COMPONENTS;
    sourced deals' are computed for the program and for partners by two aggregates)."""
    return sorted({c for family in FAMILIES for aggregate in family.aggregates for c in aggregate.components})
