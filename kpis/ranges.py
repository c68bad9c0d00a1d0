"""Custom date ranges of whole months and the short trend behind a card, read from the published set.

The KPI engine publishes values per month, quarter and year only (KPIS.md "Period"). A custom range
is therefore a run of whole months, and a metric's value over it is exact only when it can be
rebuilt from monthly values without approximation:

* **additive** metrics (money sums and counts of events that belong to exactly one month) are the
  sum of their monthly values;
* **derived** ratios whose numerator and denominator are both additive published metrics are
  recomputed from the summed parts, rounded as the engine rounds (half away from zero): sourced
  share, CAC, ROI and activation rate;
* everything else (win rates, approval rates, averages, medians, active partners, distinct
  influenced opportunities) is undefined for a custom range and reads "—": averaging monthly
  ratios or medians would publish a number the contract forbids.

`docs/kpis.md` ("Custom date ranges") records this decision.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import DecimalField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.expressions import BaseExpression
from django.db.models.functions import Coalesce

from kpis.metrics import METRICS_BY_NAME, Grain, Scope
from kpis.models import KpiValue
from kpis.periods import Period, parse_period, period_or_none
from kpis.readers import Card, partner_export_key
from kpis.selectors import published_values
from partners.models import Partner

ADDITIVE = frozenset(
    {
        "won_revenue",
        "sourced_revenue",
        "influenced_revenue",
        "attributed_revenue",
        "applications",
        "partners_joined",
        "activated_partners",
        "first_sales",
        "leads_generated",
        "opportunities_sourced",
        "program_cost",
        "new_customers_sourced",
    }
)

# ratio -> (numerator, denominator) of additive metrics; ROI's numerator is sourced - cost.
DERIVED: dict[str, tuple[str, str]] = {
    "sourced_share": ("sourced_revenue", "won_revenue"),
    "cac": ("program_cost", "new_customers_sourced"),
    "roi": ("sourced_revenue", "program_cost"),
    "activation_rate": ("activated_partners", "partners_joined"),
}

MAX_RANGE_MONTHS = 120
RANGE_SEPARATOR = ".."  # unreserved in URLs, so `2026-01..2026-11` round-trips unescaped


def defined_over_range(metric: str) -> bool:
    """Whether a custom range of months gives the metric an exact value."""
    return metric in ADDITIVE or metric in DERIVED


@dataclass(frozen=True)
class MonthRange:
    """A run of whole months, `first` to `last` inclusive (month periods)."""

    first: Period
    last: Period

    grain = "range"

    @property
    def months(self) -> int:
        return self.last.index - self.first.index + 1

    @property
    def first_month_index(self) -> int:
        return self.first.index

    @property
    def last_month_index(self) -> int:
        return self.last.index

    @property
    def start(self) -> date:
        return self.first.start

    @property
    def end(self) -> date:
        return self.last.end

    @property
    def label(self) -> str:
        if self.months == 1:
            return self.first.label
        return f"{self.first.label} to {self.last.label}"

    @property
    def labels(self) -> list[str]:
        return [self.first.shifted(i).label for i in range(self.months)]

    @property
    def param(self) -> str:
        """How a URL spells the range (`period=2026-01..2026-11`): `parse_span` reads it back."""
        return f"{self.first.label}{RANGE_SEPARATOR}{self.last.label}"

    def shifted(self, months: int) -> "MonthRange":
        return MonthRange(self.first.shifted(months), self.last.shifted(months))

    @property
    def previous(self) -> "MonthRange":
        """The same number of months just before."""
        return self.shifted(-self.months)

    @property
    def year_earlier(self) -> "MonthRange":
        return self.shifted(-12)


def month_range(first: str, last: str) -> MonthRange:
    """`2026-01`, `2026-03` -> the range; ValueError when either is not a month, they are reversed, or
    the range is longer than ten years."""
    a, b = parse_period(first), parse_period(last)
    if a.grain != Grain.MONTH or b.grain != Grain.MONTH:
        raise ValueError("a custom range runs from one month (2026-01) to another")
    if b.index < a.index:
        raise ValueError(f"the range ends ({b.label}) before it starts ({a.label})")
    if b.index - a.index + 1 > MAX_RANGE_MONTHS:
        raise ValueError(f"a custom range spans at most {MAX_RANGE_MONTHS} months")
    return MonthRange(a, b)


def parse_span(text: str | None) -> "Period | MonthRange | None":
    """A period label (`2026-03`, `2026-Q1`, `2026`) or a range of whole months as a URL spells it
    (`2026-01..2026-11`, `MonthRange.param`); None when it is neither."""
    if text and RANGE_SEPARATOR in text:
        first, _, last = text.partition(RANGE_SEPARATOR)
        try:
            return month_range(first.strip(), last.strip())
        except ValueError:
            return None
    return period_or_none(text)


def span_param(span: "Period | MonthRange") -> str:
    """The `period` query value of a period or a range (parse_span reads it back)."""
    return span.param if isinstance(span, MonthRange) else span.label


# Partner values that add up over a group of partners (a tier, a type): each fact belongs to one
# partner. Influenced revenue counts a deal fully for every partner that touched it, so it does not.
GROUP_ADDITIVE = frozenset(
    {
        "sourced_revenue",
        "attributed_revenue",
        "leads_generated",
        "opportunities_sourced",
        "program_cost",
        "new_customers_sourced",
        "first_sales",
    }
)
GROUP_DERIVED = ("cac", "roi")


def defined_for(metric: str, *, months: bool, group: bool) -> bool:
    """Whether a metric has an exact value summed over months (`months`) and/or partners (`group`)."""
    if group:
        return metric in GROUP_ADDITIVE or metric in GROUP_DERIVED
    if months:
        return defined_over_range(metric)
    return True


def _inputs(metrics: Iterable[str]) -> set[str]:
    needed: set[str] = set()
    for m in metrics:
        if m in ADDITIVE:
            needed.add(m)
        elif m in DERIVED:
            needed.update(DERIVED[m])
    return needed


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def range_value(metric: str, sums: dict[str, Decimal]) -> Decimal | None:
    """The metric from the sums of its additive parts; None where undefined."""
    if metric in ADDITIVE:
        return sums.get(metric, Decimal(0))
    if metric not in DERIVED:
        return None
    num_metric, den_metric = DERIVED[metric]
    num, den = sums.get(num_metric, Decimal(0)), sums.get(den_metric, Decimal(0))
    if den == 0:
        return None
    if metric == "roi":
        num = num - den
    places = METRICS_BY_NAME[metric].decimal_places
    return _round(num / den, places)


@dataclass(frozen=True)
class Selection:
    """What a page's numbers cover: a scope (program or one join source) or a group of partners
    (`partners`: a tier, a type), under an attribution model."""

    scope: str = Scope.PROGRAM
    scope_key: str = ""
    partners: QuerySet[Partner] | None = None
    attribution_model: str | None = None

    def rows(self, grain: str, metrics: Iterable[str], labels: Iterable[str]) -> QuerySet[KpiValue]:
        base = published_values(
            grain=grain,
            attribution_model=self.attribution_model,
            scope=Scope.PARTNER if self.partners is not None else self.scope,
            metrics=sorted(metrics),
        ).filter(period__in=sorted(set(labels)))
        if self.partners is not None:
            return base.filter(partner__in=self.partners.values("pk"))
        return base.filter(scope_key=self.scope_key if self.scope != Scope.PROGRAM else "")


def _sums_by_period(
    selection: Selection, grain: str, metrics: Iterable[str], labels: Iterable[str]
) -> dict[str, dict[str, Decimal]]:
    """period -> metric -> value summed over the selection's rows (one grouped query)."""
    rows = (
        selection.rows(grain, metrics, labels)
        .order_by()
        .values_list("period", "metric")
        .annotate(total=Sum("value"))
    )
    found: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for period, metric, total in rows:
        if total is not None:
            found[period][metric] = total
    return found


def window_sums(
    selection: Selection, grain: str, windows: list[list[str]], metrics: Iterable[str]
) -> list[dict[str, Decimal]]:
    """For each window (period labels of one grain), additive metric -> its sum. One query."""
    by_period = _sums_by_period(selection, grain, _inputs(metrics), [x for w in windows for x in w])
    result = []
    for window in windows:
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for label in window:
            for metric, value in by_period.get(label, {}).items():
                sums[metric] += value
        result.append(dict(sums))
    return result


def summed_cards(span: "Period | MonthRange", metrics: tuple[str, ...], selection: Selection) -> list[Card]:
    """Cards built from sums: a custom range (over its months) and/or a group of partners (over
    them), compared with the span before and a year earlier; the trend line ends with the span.
    Two queries. Metrics without an exact value here read "—" with the reason."""
    group = selection.partners is not None
    if isinstance(span, MonthRange):
        grain, spans = Grain.MONTH.value, (span, span.previous, span.year_earlier)
        windows = [s.labels for s in spans]
    else:
        grain = Grain(span.grain).value
        windows = [[span.label], [span.previous.label], [span.year_earlier.label]]
    current, previous, year_ago = window_sums(selection, grain, windows, metrics)
    cards = []
    for m in metrics:
        defined = defined_for(m, months=isinstance(span, MonthRange), group=group)
        cards.append(
            Card(
                metric=m,
                value=range_value(m, current) if defined else None,
                previous=range_value(m, previous) if defined else None,
                year_ago=range_value(m, year_ago) if defined else None,
                undefined_reason="" if defined else (GROUP_UNDEFINED if group else RANGE_UNDEFINED),
            )
        )
    if isinstance(span, MonthRange) and span.months > 1:
        trend = [span.first.shifted(i) for i in range(span.months)]
    else:
        trend = trend_window(span.last if isinstance(span, MonthRange) else span)
    return with_trends(cards, trend, selection)


RANGE_UNDEFINED = "Not defined for a custom range: pick a month, quarter or year."
GROUP_UNDEFINED = "Not defined for a group of partners: it does not add up over partners."

# How many periods a card's trend line shows, ending with the chosen one.
TREND_LENGTH = {Grain.MONTH: 12, Grain.QUARTER: 8, Grain.YEAR: 5}


def trend_window(period: Period) -> list[Period]:
    """The periods of a card's trend line, oldest first, ending with `period`."""
    count = TREND_LENGTH[Grain(period.grain)]
    return [period.shifted(i - count + 1) for i in range(count)]


def with_trends(cards: list[Card], periods: list[Period], selection: Selection | None = None) -> list[Card]:
    """Give each card its values over `periods` (one grain, oldest first) for the trend line. One
    query; a card without a value in any of them, or undefined here, gets no trend."""
    selection = selection or Selection()
    shown = [c for c in cards if not c.undefined_reason]
    if not shown or not periods:
        return cards
    labels = [p.label for p in periods]
    group = selection.partners is not None
    wanted = _inputs(c.metric for c in shown) if group else {c.metric for c in shown}
    found = _sums_by_period(selection, Grain(periods[0].grain).value, wanted, labels)
    from kpis.engine import ZERO_WHEN_EMPTY

    for card in shown:
        if group:  # a group's ratios come from its summed parts, period by period
            values = [range_value(card.metric, found.get(label, {})) for label in labels]
        else:
            empty = Decimal(0) if card.metric in ZERO_WHEN_EMPTY else None
            values = [found.get(label, {}).get(card.metric, empty) for label in labels]
        if any(v is not None for v in values):
            card.trend = values
            card.trend_labels = labels
    return cards


def annotate_partner_range_values(
    queryset: QuerySet[Partner],
    span: MonthRange,
    metrics: tuple[str, ...],
    *,
    attribution_model: str | None = None,
) -> QuerySet[Partner]:
    """Partners annotated `kpi_<metric>` over a custom range: additive metrics summed over its
    months in the database; the rest None (see the module docstring)."""
    queryset = queryset.annotate(export_key_=partner_export_key())
    annotations: dict[str, BaseExpression] = {}
    for metric in metrics:
        if metric in ADDITIVE:
            total = (
                published_values(
                    grain=Grain.MONTH,
                    attribution_model=attribution_model,
                    scope=Scope.PARTNER,
                    metrics=[metric],
                )
                .filter(scope_key=OuterRef("export_key_"), period__gte=span.first.label)
                .filter(period__lte=span.last.label)
                .order_by()
                .values("scope_key")
                .annotate(total=Sum("value"))
                .values("total")
            )
            annotations[f"kpi_{metric}"] = Coalesce(
                Subquery(total), Value(Decimal(0)), output_field=DecimalField()
            )
        else:
            annotations[f"kpi_{metric}"] = Value(None, output_field=DecimalField())
    return queryset.annotate(**annotations)
