"""Drill-down: the rows behind every published KPI value, whose amounts and counts add up to it.

Declared beside `kpis.metrics` (the catalogue) and read from the facts the published values were
computed from: the state of the run that published the set (`KpiPublication.state_run_id`, its
kx_* tables: kpis.engine.tables.STATE_TABLES). Each metric maps to one or two *parts* (`PARTS`);
a part is a family of rows (`FAMILIES`: deals, influence, attribution, registrations,
opportunities, applications, cohort, first sales, active partners, costs, new customers) with the
filters of that metric, and `recompute` derives the metric's value from the parts' totals with the
engine's own rounding, so a test (and the page) can tell the rows add up to the published value.
Each family's SQL follows the component it mirrors in kpis.engine.components / lifecycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import connection

from deals.models import Account, DealRegistration
from kpis.engine.dialect import Dialect
from kpis.engine.periods import ACTIVE_LOOKBACK_DAYS
from kpis.engine.tables import state_table
from kpis.metrics import METRICS_BY_NAME, Scope
from kpis.models import CostEntry, KpiPublication
from kpis.periods import Period, active_window_start
from partners.models import Partner
from program.models import ProgramSettings

# Every family's columns: (name, label, kind). kind: money (cents), date, days, count, text, flag, id.
Column = tuple[str, str, str]

DEAL_COLUMNS: tuple[Column, ...] = (
    ("deal_id", "Deal", "id"),
    ("deal_key", "Key", "text"),
    ("account", "Customer", "text"),
    ("segment", "Segment", "text"),
    ("status", "Status", "text"),
    ("partner", "Sourcing partner", "text"),
    ("created", "Created", "date"),
    ("closed", "Closed", "date"),
    ("days", "Cycle days", "days"),
    ("amount", "Amount", "money"),
)
ATTRIBUTION_COLUMNS: tuple[Column, ...] = (
    ("deal_id", "Deal", "id"),
    ("deal_key", "Key", "text"),
    ("account", "Customer", "text"),
    ("segment", "Segment", "text"),
    ("partner", "Partner", "text"),
    ("closed", "Closed", "date"),
    ("deal_amount", "Deal amount", "money"),
    ("amount", "Attributed share", "money"),
)
REGISTRATION_COLUMNS: tuple[Column, ...] = (
    ("registration_id", "Registration", "id"),
    ("account", "Customer", "text"),
    ("partner", "Partner", "text"),
    ("status", "Status", "text"),
    ("submitted", "Submitted", "date"),
    ("decided", "Decided", "date"),
)
OPPORTUNITY_COLUMNS: tuple[Column, ...] = (
    ("deal_id", "Deal", "id"),
    ("deal_key", "Key", "text"),
    ("account", "Customer", "text"),
    ("segment", "Segment", "text"),
    ("status", "Status", "text"),
    ("touches", "Touches in period", "count"),
    ("first_touch", "First touch", "date"),
    ("last_touch", "Last touch", "date"),
)
PARTNER_COLUMNS: tuple[Column, ...] = (
    ("partner_id", "Partner", "id"),
    ("partner", "Name", "text"),
    ("applied", "Applied", "date"),
    ("joined", "Joined", "date"),
    ("activated", "Activated", "date"),
    ("first_sale", "First sale", "date"),
    ("last_activity", "Latest activity in window", "date"),
    ("days", "Days", "days"),
)
COST_COLUMNS: tuple[Column, ...] = (
    ("cost_id", "Cost", "id"),
    ("date", "Date", "date"),
    ("category", "Category", "text"),
    ("partner", "Partner", "text"),
    ("description", "Note", "text"),
    ("amount", "Amount", "money"),
)
NEW_CUSTOMER_COLUMNS: tuple[Column, ...] = (
    ("deal_id", "First won deal", "id"),
    ("deal_key", "Key", "text"),
    ("account", "Customer", "text"),
    ("partner", "Sourcing partner", "text"),
    ("closed", "Closed", "date"),
    ("amount", "Amount", "money"),
)

FAMILY_COLUMNS: dict[str, tuple[Column, ...]] = {
    "deals": DEAL_COLUMNS,
    "influence": DEAL_COLUMNS,
    "attribution": ATTRIBUTION_COLUMNS,
    "registrations": REGISTRATION_COLUMNS,
    "opportunities": OPPORTUNITY_COLUMNS,
    "applications": PARTNER_COLUMNS,
    "cohort": PARTNER_COLUMNS,
    "first_sales": PARTNER_COLUMNS,
    "active": PARTNER_COLUMNS,
    "costs": COST_COLUMNS,
    "new_customers": NEW_CUSTOMER_COLUMNS,
}


@dataclass(frozen=True)
class Part:
    """One list of rows behind a metric: a family with the metric's filters. `counted`: the
    condition (over the family's row) marking the rows of a ratio's numerator (the rest are only
    in its denominator); `role`: what the part is to the value."""

    key: str
    family: str
    role: str
    status: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    counted: str = ""  # "won", "sourced", "joined", "activated", "approved", "inside"
    order_by: str = ""  # the natural order (medians: the ordered values)


def _deals(status: tuple[str, ...], segments: tuple[str, ...] = (), role: str = "rows") -> Part:
    return Part("rows", "deals", role, status=status, segments=segments)


_WON = ("won",)
_CLOSED = ("won", "lost")


def _ratio(family: str, counted: str, **kw: Any) -> tuple[Part, ...]:
    return (Part("rows", family, "numerator and denominator", counted=counted, **kw),)


def _median(part: Part) -> tuple[Part, ...]:
    return (Part(part.key, part.family, "ordered values", part.status, part.segments, order_by="days"),)


# Each metric's parts: the single source of which rows make which published value.
PARTS: dict[str, tuple[Part, ...]] = {
    "won_revenue": (_deals(_WON),),
    "sourced_revenue": (_deals(_WON, ("s",)),),
    "influenced_revenue": (Part("rows", "influence", "rows"),),
    "attributed_revenue": (Part("rows", "attribution", "rows"),),
    "sourced_share": (Part("rows", "deals", "numerator and denominator", status=_WON, counted="sourced"),),
    "avg_deal_size_sourced": (_deals(_WON, ("s",), role="sum and count"),),
    "avg_deal_size_influenced": (_deals(_WON, ("i",), role="sum and count"),),
    "avg_deal_size_direct": (_deals(_WON, ("d",), role="sum and count"),),
    "revenue_per_active_partner": (
        Part("numerator", "deals", "numerator", status=_WON, segments=("s", "i")),
        Part("denominator", "active", "denominator"),
    ),
    "applications": (Part("rows", "applications", "rows"),),
    "partners_joined": (Part("rows", "cohort", "rows"),),
    "approval_rate_partners": _ratio("applications", "joined"),
    "activation_rate": _ratio("cohort", "activated"),
    "activated_partners": (Part("rows", "cohort", "rows", counted="activated"),),
    "activation_provisional": _ratio("cohort", "inside"),
    "active_partners": (Part("rows", "active", "rows"),),
    "first_sales": (Part("rows", "first_sales", "rows"),),
    "ttfs_median_days": _median(Part("rows", "first_sales", "")),
    "ttfs_mean_days": (Part("rows", "first_sales", "sum and count", order_by="days"),),
    "leads_generated": (Part("rows", "registrations", "rows", status=("submitted",)),),
    "opportunities_sourced": (Part("rows", "registrations", "rows", status=("approved",)),),
    "registration_approval_rate": _ratio("registrations", "approved", status=("approved", "rejected")),
    "opportunities_influenced": (Part("rows", "opportunities", "rows"),),
    "win_rate_sourced": _ratio("deals", "won", status=_CLOSED, segments=("s",)),
    "win_rate_influenced": _ratio("deals", "won", status=_CLOSED, segments=("i",)),
    "win_rate_direct": _ratio("deals", "won", status=_CLOSED, segments=("d",)),
    "sales_cycle_median_days_sourced": _median(_deals(_WON, ("s",))),
    "sales_cycle_median_days_influenced": _median(_deals(_WON, ("i",))),
    "sales_cycle_median_days_direct": _median(_deals(_WON, ("d",))),
    "program_cost": (Part("rows", "costs", "rows"),),
    "new_customers_sourced": (Part("rows", "new_customers", "rows"),),
    "cac": (Part("numerator", "costs", "numerator"), Part("denominator", "new_customers", "denominator")),
    "roi": (
        Part("numerator", "deals", "sourced revenue", status=_WON, segments=("s",)),
        Part("denominator", "costs", "program cost"),
    ),
}

DRILLABLE: frozenset[str] = frozenset(PARTS)

assert set(METRICS_BY_NAME) >= DRILLABLE, "every drill-down names a metric of the catalogue"
assert set(METRICS_BY_NAME) - DRILLABLE == {"target", "target_progress"}, "every KPI value drills down"


def drillable(metric: str, scope: str) -> bool:
    """Whether a published value of `metric` in `scope` has rows to drill into."""
    m = METRICS_BY_NAME.get(metric)
    return m is not None and metric in PARTS and scope in m.scopes()


# -- where the facts are ------------------------------------------------------------------------
class NoPublishedFacts(LookupError):
    """No run's state describes the published set (none published yet, or it was lost)."""


@dataclass(frozen=True)
class Facts:
    """The state tables of the run that published the set."""

    run_id: int
    as_of: date
    time_zone: str = "UTC"
    attribution_model: str = "linear"
    activation_window_days: int = 90

    def sql(self) -> Dialect:
        return Dialect(self.time_zone)

    def t(self, name: str) -> str:
        return state_table(self.run_id, name)


def published_facts() -> Facts:
    """The facts behind the published set; NoPublishedFacts when there are none."""
    run_id = KpiPublication.objects.filter(pk=1).values_list("state_run_id", flat=True).first()
    if run_id is None or not _state_table_exists(run_id):
        raise NoPublishedFacts("no KPI run's facts describe the published values yet")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT as_of FROM {state_table(run_id, 'kx_state')}")
        row = cursor.fetchone()
    if row is None:  # an unlogged state emptied by a crash
        raise NoPublishedFacts("the facts of the last KPI run were lost; the next run rebuilds them")
    as_of, program = row[0], ProgramSettings.load()
    return Facts(
        int(run_id),
        as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of)),
        program.time_zone,
        program.attribution_model,
        int(program.activation_window_days),
    )


def _state_table_exists(run_id: int) -> bool:
    sentinel = state_table(run_id, "kx_state")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [sentinel])
        else:
            cursor.execute(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = %s", [sentinel]
            )
        return bool(cursor.fetchone()[0])


# -- the rows of each family --------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """What to drill into: a metric's value for a scope (sid: partner or join source id; 0 for the
    program) and a period."""

    metric: str
    scope: str
    sid: int
    period: Period
    part: str = "rows"

    def the_part(self) -> Part:
        parts = PARTS[self.metric]
        return next((p for p in parts if p.key == self.part), parts[0])


def _months(q: Query, column: str) -> str:
    return f"{column} BETWEEN {int(q.period.first_month_index)} AND {int(q.period.last_month_index)}"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _names() -> tuple[str, str]:
    return Partner._meta.db_table, Account._meta.db_table


def family_select(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """The SQL of the part's rows (the columns of FAMILY_COLUMNS[part.family], plus `counted`)."""
    return {
        "deals": _deal_rows,
        "influence": _influence_rows,
        "attribution": _attribution_rows,
        "registrations": _registration_rows,
        "opportunities": _opportunity_rows,
        "applications": _partner_rows,
        "cohort": _partner_rows,
        "first_sales": _partner_rows,
        "active": _active_rows,
        "costs": _cost_rows,
        "new_customers": _new_customer_rows,
    }[part.family](facts, q, part, sql)


def _deal_columns(sql: Dialect, counted: str = "0") -> str:
    partner, account = _names()
    return f"""d.id AS deal_id, d.dkey AS deal_key,
        (SELECT a.name FROM {account} a WHERE a.id = d.account_id) AS account,
        d.seg AS segment, d.status,
        (SELECT p.name FROM {partner} p WHERE p.id = d.sp) AS partner,
        d.created_d AS created, d.closed_d AS closed,
        {sql.days_between("d.closed_d", "d.created_d")} AS days, d.cents AS amount, {counted} AS counted"""


def _deal_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    where = [_months(q, "d.closed_mi"), _in("d.status", part.status)]
    if part.segments:
        where.append(_in("d.seg", part.segments))
    if q.scope == Scope.PARTNER:
        where.append(f"d.sp = {int(q.sid)}")
    elif q.scope == Scope.JOIN_SOURCE:
        where.append(f"d.sp IN (SELECT id FROM {facts.t('kx_partner')} WHERE js = {int(q.sid)})")
    counted = {
        "won": "CASE WHEN d.status = 'won' THEN 1 ELSE 0 END",
        "sourced": "CASE WHEN d.seg = 's' THEN 1 ELSE 0 END",
    }
    columns = _deal_columns(sql, counted.get(part.counted, "0"))
    return f"SELECT {columns} FROM {facts.t('kx_deal')} d WHERE {' AND '.join(where)}"


def _influence_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """Program: every influenced deal won in the period; a partner or join source: each influenced
    deal it touched, once (as the influence component reads them, from the attribution rows)."""
    where = [_months(q, "d.closed_mi"), "d.status = 'won'", "d.seg = 'i'"]
    if q.scope != Scope.PROGRAM:
        column = "partner_id" if q.scope == Scope.PARTNER else "js"
        where.append(
            f"d.id IN (SELECT a.deal_id FROM {facts.t('kx_attr')} a WHERE a.seg = 'i' "
            f"AND a.{column} = {int(q.sid)} AND {_months(q, 'a.closed_mi')})"
        )
    return f"SELECT {_deal_columns(sql)} FROM {facts.t('kx_deal')} d WHERE {' AND '.join(where)}"


def _attribution_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    partner, account = _names()
    where = [_months(q, "x.closed_mi")]
    if q.scope == Scope.PARTNER:
        where.append(f"x.partner_id = {int(q.sid)}")
    elif q.scope == Scope.JOIN_SOURCE:
        where.append(f"x.js = {int(q.sid)}")
    return f"""SELECT x.deal_id, d.dkey AS deal_key,
            (SELECT a.name FROM {account} a WHERE a.id = d.account_id) AS account, x.seg AS segment,
            (SELECT p.name FROM {partner} p WHERE p.id = x.partner_id) AS partner, d.closed_d AS closed,
            x.deal_cents AS deal_amount, x.cents AS amount, 0 AS counted
        FROM {facts.t("kx_attr")} x JOIN {facts.t("kx_deal")} d ON d.id = x.deal_id
        WHERE {" AND ".join(where)}"""


def _scope_where(q: Query, partner: str = "r.partner_id", js: str = "r.js") -> list[str]:
    if q.scope == Scope.PARTNER:
        return [f"{partner} = {int(q.sid)}"]
    if q.scope == Scope.JOIN_SOURCE:
        return [f"{js} = {int(q.sid)}"]
    return []


def _registration_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    partner, account = _names()
    live = DealRegistration._meta.db_table
    if part.status == ("submitted",):  # leads: every registration submitted in the period
        where = [_months(q, "r.submitted_mi")]
    else:
        where = [_months(q, "r.decided_mi"), _in("r.status", part.status)]
    where += _scope_where(q)
    counted = "CASE WHEN r.status = 'approved' THEN 1 ELSE 0 END" if part.counted else "0"
    decided = f"(SELECT l.decided_at FROM {live} l WHERE l.id = r.id)"  # a moment: dated in Python
    return f"""SELECT r.id AS registration_id,
            (SELECT a.name FROM {account} a WHERE a.id = r.account_id) AS account,
            (SELECT p.name FROM {partner} p WHERE p.id = r.partner_id) AS partner, r.status,
            r.submitted_d AS submitted, {decided} AS decided, {counted} AS counted
        FROM {facts.t("kx_reg")} r WHERE {" AND ".join(where)}"""


def _opportunity_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """Distinct deals with a counting touch (by the scope) dated in the period."""
    account = _names()[1]
    where = ["t.late = 0", _months(q, "t.touched_mi")] + _scope_where(q, "t.partner_id", "t.js")
    return f"""SELECT d.id AS deal_id, d.dkey AS deal_key,
            (SELECT a.name FROM {account} a WHERE a.id = d.account_id) AS account, d.seg AS segment,
            d.status, t.n AS touches, t.first_d AS first_touch, t.last_d AS last_touch, 0 AS counted
        FROM (SELECT t.deal_id, COUNT(*) AS n, MIN(t.touched_d) AS first_d, MAX(t.touched_d) AS last_d
              FROM {facts.t("kx_touch_all")} t WHERE {" AND ".join(where)} GROUP BY t.deal_id) t
        JOIN {facts.t("kx_deal")} d ON d.id = t.deal_id"""


def _partner_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """Applications (applied in the period), a cohort (joined in it) or its first sales."""
    partner = _names()[0]
    window = int(facts.activation_window_days)
    activated = f"""(SELECT MIN(m.mind) FROM {facts.t("kx_actm")} m WHERE m.partner_id = p.id)"""
    days_activated = sql.days_between("x.activated", "x.joined")
    where = _scope_where(q, "p.id", "p.js")
    if part.family == "applications":
        where.append(_months(q, "p.applied_mi"))
    else:
        where += ["p.joined IS NOT NULL", _months(q, "p.joined_mi")]
    first_sale = f"(SELECT f.fs_d FROM {facts.t('kx_fs')} f WHERE f.partner_id = p.id)"
    if part.family == "first_sales":
        where.append(f"{first_sale} IS NOT NULL")
    as_of = sql.date_literal(facts.as_of)
    counted = {
        "joined": "CASE WHEN x.joined IS NOT NULL THEN 1 ELSE 0 END",
        "activated": f"CASE WHEN x.activated IS NOT NULL AND {days_activated} <= {window} THEN 1 ELSE 0 END",
        "inside": f"CASE WHEN x.joined <= {as_of} AND {sql.days_between(as_of, 'x.joined')} <= {window} "
        "THEN 1 ELSE 0 END",
    }.get(part.counted, "0")
    days = sql.days_between("x.first_sale", "x.joined") if part.family == "first_sales" else days_activated
    return f"""SELECT x.partner_id, x.partner, x.applied, x.joined, x.activated, x.first_sale,
            x.last_activity, {days} AS days, {counted} AS counted
        FROM (SELECT p.id AS partner_id, (SELECT n.name FROM {partner} n WHERE n.id = p.id) AS partner,
                     p.applied, p.joined, {activated} AS activated, {first_sale} AS first_sale,
                     CAST(NULL AS DATE) AS last_activity
              FROM {facts.t("kx_partner")} p WHERE {" AND ".join(where)}) x"""


def _active_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    """Partners with a qualifying activity in the 90 days ending on the period's last day."""
    partner = _names()[0]
    start = sql.date_literal(active_window_start(q.period.end, ACTIVE_LOOKBACK_DAYS))
    end = int(q.period.last_month_index)
    where = [f"a.mi BETWEEN {end - 3} AND {end}", f"a.maxd >= {start}"] + _scope_where(
        q, "a.partner_id", "a.js"
    )
    return f"""SELECT p.id AS partner_id, (SELECT n.name FROM {partner} n WHERE n.id = p.id) AS partner,
            p.applied, p.joined, CAST(NULL AS DATE) AS activated, CAST(NULL AS DATE) AS first_sale,
            a.last_activity, CAST(NULL AS INTEGER) AS days, 0 AS counted
        FROM (SELECT a.partner_id, MAX(a.maxd) AS last_activity FROM {facts.t("kx_actm")} a
              WHERE {" AND ".join(where)} GROUP BY a.partner_id) a
        JOIN {facts.t("kx_partner")} p ON p.id = a.partner_id"""


def _cost_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    partner, cost = _names()[0], CostEntry._meta.db_table
    where = [_months(q, "c.mi")]
    if q.scope == Scope.PARTNER:
        where.append(f"c.partner_id = {int(q.sid)}")
    elif q.scope == Scope.JOIN_SOURCE:  # tagged with the source or one of its partners, each once
        where.append(f"(c.tag_js = {int(q.sid)} OR c.partner_js = {int(q.sid)})")
    live = f"(SELECT {{}} FROM {cost} e WHERE e.id = c.id)"
    return f"""SELECT c.id AS cost_id, {live.format("e.date")} AS date,
            {live.format("e.category")} AS category,
            (SELECT p.name FROM {partner} p WHERE p.id = c.partner_id) AS partner,
            {live.format("e.note")} AS description, c.cents AS amount, 0 AS counted
        FROM {facts.t("kx_cost")} c WHERE {" AND ".join(where)}"""


def _new_customer_rows(facts: Facts, q: Query, part: Part, sql: Dialect) -> str:
    partner, account = _names()
    where = [_months(q, "n.closed_mi")] + _scope_where(q, "n.partner_id", "n.js")
    return f"""SELECT n.deal_id, d.dkey AS deal_key,
            (SELECT a.name FROM {account} a WHERE a.id = n.account_id) AS account,
            (SELECT p.name FROM {partner} p WHERE p.id = n.partner_id) AS partner,
            d.closed_d AS closed, d.cents AS amount, 0 AS counted
        FROM {facts.t("kx_newcust")} n JOIN {facts.t("kx_deal")} d ON d.id = n.deal_id
        WHERE {" AND ".join(where)}"""


# -- totals, pages, the value recomputed --------------------------------------------------------
@dataclass
class Totals:
    """A part's totals: rows, summed amount (cents), the numerator's rows and amount, summed days,
    and the median of the days (medians' ordered values)."""

    rows: int = 0
    cents: int = 0
    counted: int = 0
    counted_cents: int = 0
    days: int = 0
    median_days: Decimal | None = None


@dataclass
class Drill:
    query: Query
    part: Part
    columns: tuple[Column, ...]
    totals: Totals
    rows: list[dict[str, Any]] = field(default_factory=list)
    parts: tuple[Part, ...] = ()


def _has(part: Part, column: str) -> bool:
    return any(c[0] == column for c in FAMILY_COLUMNS[part.family])


def totals(facts: Facts, q: Query, part: Part, sql: Dialect) -> Totals:
    """The part's totals in one query (two more for a median's middle values)."""
    rows = family_select(facts, q, part, sql)
    amount = "amount" if _has(part, "amount") else "0"
    days = "days" if _has(part, "days") else "0"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT COUNT(*), COALESCE(SUM({amount}), 0), COALESCE(SUM(counted), 0),
                   COALESCE(SUM(CASE WHEN counted = 1 THEN {amount} ELSE 0 END), 0), COALESCE(SUM({days}), 0)
            FROM ({rows}) z"""
        )
        n, cents, counted, counted_cents, day_sum = cursor.fetchone()
        result = Totals(int(n), int(cents), int(counted), int(counted_cents), int(day_sum or 0))
        if part.order_by == "days" and n:
            cursor.execute(
                f"SELECT days FROM ({rows}) z ORDER BY days LIMIT {2 - n % 2} OFFSET {(n - 1) // 2}"
            )
            middle = [int(r[0]) for r in cursor.fetchall()]
            result.median_days = (Decimal(sum(middle)) / len(middle)).quantize(Decimal("0.1"))
    return result


def sort_columns(part: Part) -> list[str]:
    return [c[0] for c in FAMILY_COLUMNS[part.family]]


def order_clause(part: Part, sort: str) -> str:
    """ORDER BY for `sort` (a column name, `-` first for descending; unknown: the natural order),
    with the first column as the tie-break so pages are stable."""
    names = sort_columns(part)
    descending = sort.startswith("-")
    column = sort.lstrip("-")
    if column not in names:
        column, descending = (part.order_by or names[0]), False
    key = names[0]
    direction = " DESC" if descending else ""
    return f"ORDER BY {column}{direction}, {key}" if column != key else f"ORDER BY {key}{direction}"


def page(
    facts: Facts,
    q: Query,
    *,
    sort: str = "",
    offset: int = 0,
    limit: int = 50,
    sql: Dialect | None = None,
    known: Totals | None = None,
) -> Drill:
    """One page of the rows behind `q` and the totals of them all: a fixed number of queries."""
    sql = sql or facts.sql()
    part = q.the_part()
    rows = family_select(facts, q, part, sql)
    result = Drill(
        q, part, FAMILY_COLUMNS[part.family], known or totals(facts, q, part, sql), parts=PARTS[q.metric]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM ({rows}) z {order_clause(part, sort)} LIMIT {int(limit)} OFFSET {int(offset)}"
        )
        names = [c[0] for c in cursor.description]
        result.rows = [_row(dict(zip(names, r, strict=True)), part, sql.tz) for r in cursor.fetchall()]
    return result


def iter_rows(
    facts: Facts, q: Query, *, sort: str = "", sql: Dialect | None = None
) -> Iterator[dict[str, Any]]:
    """Every row behind `q`, in order, fetched in batches (a streamed CSV)."""
    sql = sql or facts.sql()
    part = q.the_part()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM ({family_select(facts, q, part, sql)}) z {order_clause(part, sort)}")
        names = [c[0] for c in cursor.description]
        while batch := cursor.fetchmany(2000):
            for r in batch:
                yield _row(dict(zip(names, r, strict=True)), part, sql.tz)


def _row(raw: dict[str, Any], part: Part, tz: str) -> dict[str, Any]:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    row: dict[str, Any] = {}
    for name, _label, kind in FAMILY_COLUMNS[part.family]:
        value = raw.get(name)
        if kind == "money" and value is not None:
            value = (Decimal(int(value)) / 100).quantize(Decimal("0.01"))
        elif kind == "date" and value is not None:
            if isinstance(value, str):
                value = datetime.fromisoformat(value) if len(value) > 10 else date.fromisoformat(value)
            if isinstance(value, datetime):
                value = value.astimezone(ZoneInfo(tz)).date() if value.tzinfo else value.date()
        row[name] = value
    row["counted"] = bool(raw.get("counted"))
    return row


_CENT = Decimal("0.01")


def _div(num: int, den: int, places: str) -> Decimal | None:
    """num / den rounded half away from zero to `places` (the engine's rdiv); None for den 0."""
    if not den:
        return None
    return (Decimal(num) / Decimal(den)).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def recompute(metric: str, parts: dict[str, Totals]) -> Decimal | None:
    """The metric's value from its parts' totals (`PARTS[metric]` keys), rounded as the engine
    rounds it: what the rows add up to."""
    r = parts.get("rows") or Totals()
    money = Decimal(r.cents) / 100
    if metric in (
        "won_revenue",
        "sourced_revenue",
        "influenced_revenue",
        "attributed_revenue",
        "program_cost",
    ):
        return money.quantize(_CENT)
    if metric in ("applications", "partners_joined", "active_partners", "first_sales", "leads_generated"):
        return Decimal(r.rows)
    if metric in ("opportunities_sourced", "opportunities_influenced", "new_customers_sourced"):
        return Decimal(r.rows)
    if metric == "activated_partners":
        return Decimal(r.counted)
    if metric == "activation_provisional":
        return None if not r.rows else Decimal(1 if r.counted else 0)
    if metric == "sourced_share":
        return _div(r.counted_cents, r.cents, "0.0001")
    if metric.startswith("avg_deal_size_"):
        return None if not r.rows else (_div(r.cents, r.rows, "1") or Decimal(0)) / 100
    if metric in (
        "approval_rate_partners",
        "activation_rate",
        "registration_approval_rate",
    ) or metric.startswith("win_rate_"):
        return _div(r.counted, r.rows, "0.0001")
    if metric.startswith("sales_cycle_median_days_") or metric == "ttfs_median_days":
        return r.median_days
    if metric == "ttfs_mean_days":
        return _div(r.days, r.rows, "0.1")
    num, den = parts.get("numerator") or Totals(), parts.get("denominator") or Totals()
    if metric == "revenue_per_active_partner":
        return None if not den.rows else (_div(num.cents, den.rows, "1") or Decimal(0)) / 100
    if metric == "cac":
        return None if not den.rows else (_div(num.cents, den.rows, "1") or Decimal(0)) / 100
    if metric == "roi":
        return _div(num.cents - den.cents, den.cents, "0.0001")
    raise KeyError(metric)


def all_totals(facts: Facts, q: Query, sql: Dialect | None = None) -> dict[str, Totals]:
    sql = sql or facts.sql()
    return {p.key: totals(facts, q, p, sql) for p in PARTS[q.metric]}


def rows_add_up_to(facts: Facts, q: Query) -> Decimal | None:
    """What the rows behind `q` add up to (equal to the published value: tested per family)."""
    return recompute(q.metric, all_totals(facts, q))


# -- what a page and a download show ------------------------------------------------------------
@dataclass(frozen=True)
class Paging:
    """A page of a drill-down in the shape includes/pagination.html reads."""

    number: int
    num_pages: int
    count: int

    @property
    def paginator(self) -> Paging:
        return self

    def has_other_pages(self) -> bool:
        return self.num_pages > 1

    def has_previous(self) -> bool:
        return self.number > 1

    def has_next(self) -> bool:
        return self.number < self.num_pages

    def previous_page_number(self) -> int:
        return self.number - 1

    def next_page_number(self) -> int:
        return self.number + 1

    @property
    def start_index(self) -> int:
        return 0 if not self.count else (self.number - 1) * PAGE_SIZE + 1


PAGE_SIZE = 50


def published_value(q: Query, model: str) -> Decimal | None:
    """The published value `q` drills into (under `model`), None when absent."""
    from kpis.models import KpiValue

    qs = KpiValue.objects.filter(
        attribution_model=model,
        scope=q.scope,
        grain=q.period.grain,
        period=q.period.label,
        metric=q.metric,
        target_metric="",
    )
    if q.scope == Scope.PARTNER:
        qs = qs.filter(partner_id=q.sid)
    elif q.scope == Scope.JOIN_SOURCE:
        qs = qs.filter(join_source_id=q.sid)
    return qs.values_list("value", flat=True).first()


def page_context(facts: Facts, q: Query, *, sort: str = "", page_number: object = 1) -> dict[str, Any]:
    """Everything a drill-down page shows: the part's columns and one page of its rows, every part's
    totals, what they add up to and the published value. A fixed number of queries."""
    sql = facts.sql()
    part = q.the_part()
    parts = all_totals(facts, q, sql)
    count = parts[part.key].rows
    num_pages = max(1, -(-count // PAGE_SIZE))
    try:
        number = min(max(1, int(str(page_number))), num_pages)
    except ValueError:
        number = 1
    drill = page(
        facts, q, sort=sort, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE, sql=sql, known=parts[part.key]
    )
    return {
        "drill": drill,
        "part": part,
        "parts": [(p, parts[p.key]) for p in PARTS[q.metric]],
        "totals": parts[part.key],
        "adds_up_to": recompute(q.metric, parts),
        "published": published_value(q, facts.attribution_model),
        "page": Paging(number, num_pages, count),
        "sort": sort,
        "columns": FAMILY_COLUMNS[part.family],
    }


def csv_header(part: Part) -> list[str]:
    return [c[0] for c in FAMILY_COLUMNS[part.family]] + (["in_numerator"] if part.counted else [])


def csv_rows(facts: Facts, q: Query, *, sort: str = "") -> Iterator[list[str]]:
    """The header and every row behind `q` as CSV fields (amounts with two decimals, ISO dates)."""
    part = q.the_part()
    yield csv_header(part)
    for row in iter_rows(facts, q, sort=sort):
        fields = ["" if row[c[0]] is None else str(row[c[0]]) for c in FAMILY_COLUMNS[part.family]]
        if part.counted:
            fields.append("1" if row["counted"] else "0")
        yield fields


def cents(amount: int) -> Decimal:
    return (Decimal(int(amount)) / 100).quantize(_CENT)
