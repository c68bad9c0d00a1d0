"""Drill-down: the rows behind every published KPI value, whose amounts and counts add up to it.

Declared beside `kpis.metrics` (the catalogue) and read from the facts the published values were
computed from: the state of the run that published the set (`KpiPublication.state_run_id`, its
kx_* tables: kpis.engine.tables.STATE_TABLES). Each metric maps to one or two *parts* (`PARTS`);
a part is a family of rows (`FAMILY_COLUMNS`: deals, influence, attribution, registrations,
opportunities, applications, cohort, first sales, active partners, costs, new customers) with the
filters of that metric, and `recompute` derives the metric's value from the parts' totals with the
engine's own rounding, so a test (and the page) can tell the rows add up to the published value.
Each family's SQL (kpis.drilldown_rows) follows the component it mirrors in
kpis.engine.components / lifecycle; what a page and a download show is kpis.drilldown_pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import connection

from kpis.drilldown_rows import family_select
from kpis.engine.dialect import Dialect
from kpis.engine.tables import state_table
from kpis.metrics import METRICS_BY_NAME
from kpis.metrics import label as metric_label
from kpis.models import KpiPublication
from kpis.periods import Period
from kpis.ranges import MonthRange, defined_over_range, parse_span
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
    "mdf_deals": DEAL_COLUMNS,
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
    category: str = ""  # costs: only this category (commission, mdf)


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
    "commission_paid": (Part("rows", "costs", "rows", category="commission"),),
    "commission_rate": (
        Part("numerator", "costs", "commission paid", category="commission"),
        Part("denominator", "attribution", "attributed revenue"),
    ),
    "mdf_spent": (Part("rows", "costs", "rows", category="mdf"),),
    "mdf_return": (
        Part("numerator", "mdf_deals", "revenue of the deals MDF produced"),
        Part("denominator", "costs", "MDF spent", category="mdf"),
    ),
}

DRILLABLE: frozenset[str] = frozenset(PARTS)

assert set(METRICS_BY_NAME) >= DRILLABLE, "every drill-down names a metric of the catalogue"
assert set(METRICS_BY_NAME) - DRILLABLE == {"target", "target_progress"}, "every KPI value drills down"


def drillable(metric: str, scope: str) -> bool:
    """Whether a published value of `metric` in `scope` has rows to drill into."""
    m = METRICS_BY_NAME.get(metric)
    return m is not None and metric in PARTS and scope in m.scopes()


PERIOD_HELP = "Choose a period like 2026-03, 2026-Q1 or 2026, or a range of months like 2026-01..2026-11."


def drill_span(metric: str, text: str | None) -> Period | MonthRange:
    """The `period` of a drill-down (page, portal, API): a period label or a range of whole months
    (`2026-01..2026-11`); ValueError with the message to show when it is neither, or when the
    metric has no value over a custom range (its card shows "—": kpis.ranges)."""
    span = parse_span(text)
    if span is None:
        raise ValueError(PERIOD_HELP)
    if isinstance(span, MonthRange) and not defined_over_range(metric):
        raise ValueError(
            f"{metric_label(metric)} has no value over a custom range: pick a month, quarter or year."
        )
    return span


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
    program) and a period or a custom range of whole months (kpis.ranges: the rows of its months)."""

    metric: str
    scope: str
    sid: int
    period: Period | MonthRange
    part: str = "rows"

    def the_part(self) -> Part:
        parts = PARTS[self.metric]
        return next((p for p in parts if p.key == self.part), parts[0])


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
        "commission_paid",
        "mdf_spent",
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
    if metric in ("commission_rate", "mdf_return"):
        return _div(num.cents, den.cents, "0.0001")
    raise KeyError(metric)


def all_totals(facts: Facts, q: Query, sql: Dialect | None = None) -> dict[str, Totals]:
    sql = sql or facts.sql()
    return {p.key: totals(facts, q, p, sql) for p in PARTS[q.metric]}


def rows_add_up_to(facts: Facts, q: Query) -> Decimal | None:
    """What the rows behind `q` add up to (equal to the published value: tested per family)."""
    return recompute(q.metric, all_totals(facts, q))
