"""The read side the dashboards and the portal share (it was dashboards/readers.py): KPI cards,
monthly revenue, join source and partner values. Every number comes from
kpis.selectors.published_values; nothing recomputes a KPI, and each function runs a fixed number
of queries, whatever the number of partners or periods.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import CharField, DecimalField, F, OuterRef, QuerySet, Subquery, Value
from django.db.models.expressions import BaseExpression
from django.db.models.functions import Cast, Coalesce, NullIf

from kpis import formatting
from kpis.metrics import METRICS_BY_NAME, Grain, Scope
from kpis.metrics import label as metric_label
from kpis.periods import Period, months_ending, parse_period, period_of, period_or_none
from kpis.selectors import kpi_card_values, published_values, zero_when_empty
from partners.models import Partner
from program.models import ProgramSettings, program_today

REVENUE_SERIES = ("won_revenue", "sourced_revenue", "influenced_revenue")


@dataclass
class Card:
    """One KPI card: the period's value, the previous period, the same period a year earlier, and
    the target and progress when a target names the metric; the display text of each."""

    metric: str
    value: Decimal | None = None
    previous: Decimal | None = None
    year_ago: Decimal | None = None
    target: Decimal | None = None
    progress: Decimal | None = None
    # Activation rate of a cohort some of whose partners are still inside their window.
    provisional: bool = False
    # The values of the periods leading to this one, oldest first (kpis.ranges.with_trends).
    trend: list[Decimal | None] = field(default_factory=list)
    trend_labels: list[str] = field(default_factory=list)
    # Why the value is undefined whatever the data (a ratio over a custom range), or "".
    undefined_reason: str = ""
    # What `previous` is when not the period before (the portal compares a year so far with the
    # same months a year earlier), or "".
    previous_label: str = ""
    # A page's own name for the metric (a partner's ROI is not "Program ROI"), or "".
    title: str = ""

    @property
    def label(self) -> str:
        return self.title or metric_label(self.metric)

    @property
    def cohort(self) -> bool:
        return METRICS_BY_NAME[self.metric].cohort

    @property
    def display(self) -> str:
        return formatting.display(self.metric, self.value)

    @property
    def compact(self) -> str:
        """Money as `$2.22M` (the exact figure is `display`); other units as `display`."""
        return formatting.compact(self.metric, self.value)

    @property
    def export_value(self) -> str:
        return formatting.export_string(self.metric, self.value)

    @property
    def change_display(self) -> str:
        """The change against the previous period: `+12.5%` (`+3.1 pts` for rates), or ""."""
        return formatting.change(self.metric, self.value, self.previous)

    @property
    def change_direction(self) -> str:
        """`up`, `down` or `flat` (empty when there is nothing to compare)."""
        change = self.change
        if change is None:
            return ""
        return "up" if change > 0 else "down" if change < 0 else "flat"

    @property
    def change_is_good(self) -> bool | None:
        """Whether the change is an improvement (lower is better for costs and durations)."""
        direction = self.change_direction
        if direction in ("", "flat"):
            return None
        return (direction == "up") != formatting.lower_is_better(self.metric)

    @property
    def previous_display(self) -> str:
        return formatting.display(self.metric, self.previous)

    @property
    def year_ago_display(self) -> str:
        return formatting.display(self.metric, self.year_ago)

    @property
    def target_display(self) -> str:
        return formatting.display(self.metric, self.target)

    @property
    def progress_percent(self) -> int | None:
        """Progress to target for the bar, capped at 100 (the text shows the real figure)."""
        if self.progress is None:
            return None
        return max(0, min(100, int(self.progress * 100)))

    @property
    def progress_display(self) -> str:
        return formatting.percent(self.progress)

    @property
    def change(self) -> Decimal | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


_GRAIN_ORDER = {Grain.MONTH: 0, Grain.QUARTER: 1, Grain.YEAR: 2}


def available_periods(grain: str, *, attribution_model: str | None = None) -> list[str]:
    """Period labels of the grain that have a published program value, newest first."""
    return list(
        published_values(
            grain=grain, attribution_model=attribution_model, scope=Scope.PROGRAM, metrics=["won_revenue"]
        )
        .order_by("-period_start")
        .values_list("period", flat=True)
    )


def choose_period(
    grain: str, requested: str | None, *, attribution_model: str | None = None
) -> tuple[Period, list[str]]:
    """The requested period when it is a label of the grain; otherwise the newest published period
    that is already complete (a month or quarter still under way would compare a part with wholes),
    or the current one when nothing complete is published."""
    periods = available_periods(grain, attribution_model=attribution_model)
    chosen = period_or_none(requested)
    if chosen is not None and chosen.grain == grain:
        return chosen, periods
    if chosen is not None:
        # Switching grain keeps the place: 2026-10 becomes 2026-Q4 or 2026; 2026-Q4 becomes its last month.
        coarser = _GRAIN_ORDER[Grain(grain)] >= _GRAIN_ORDER[Grain(chosen.grain)]
        return period_of(chosen.start if coarser else chosen.end, grain), periods
    current = period_of(program_today(), grain)
    complete = [parse_period(label_) for label_ in periods if parse_period(label_).index < current.index]
    return (complete[0] if complete else current), periods


def cards(
    period: Period,
    metrics: tuple[str, ...],
    *,
    scope: str = Scope.PROGRAM,
    scope_key: str = "",
    attribution_model: str | None = None,
) -> list[Card]:
    """One card per metric: the period's value, the previous period, the same period a year
    earlier, and the target and progress when a target names the metric. One query, through the
    KPI helper's card selector."""
    values = kpi_card_values(
        metrics=metrics,
        grain=Grain(period.grain).value,
        period=period.label,
        scope=scope,
        scope_key=scope_key,
        attribution_model=attribution_model,
    )
    return [
        Card(
            metric=m,
            value=values[m]["current"],
            previous=values[m]["previous"],
            year_ago=values[m]["last_year"],
            target=values[m]["target"],
            progress=values[m]["target_progress"],
        )
        for m in metrics
    ]


@dataclass
class MonthlyRevenue:
    period: str
    won: Decimal = Decimal("0")
    sourced: Decimal = Decimal("0")
    influenced: Decimal = Decimal("0")
    attributed: Decimal = Decimal("0")

    @property
    def direct(self) -> Decimal:
        return self.won - self.sourced - self.influenced


def revenue_by_month(
    period: Period,
    *,
    months: int = 12,
    scope: str = Scope.PROGRAM,
    partner_id: int | None = None,
    metrics: tuple[str, ...] = REVENUE_SERIES,
    attribution_model: str | None = None,
) -> list[MonthlyRevenue]:
    """Monthly revenue for the `months` months ending with the period (zeros where nothing was won)."""
    window = months_ending(period, months)
    series = {p.label: MonthlyRevenue(period=p.label) for p in window}
    rows = published_values(
        grain=Grain.MONTH,
        attribution_model=attribution_model,
        scope=scope,
        partner_id=partner_id,
        metrics=list(metrics),
        period_from=window[0].label,
        period_to=window[-1].label,
    )
    if scope == Scope.PROGRAM:
        rows = rows.filter(scope_key="")
    attribute = {
        "won_revenue": "won",
        "sourced_revenue": "sourced",
        "influenced_revenue": "influenced",
        "attributed_revenue": "attributed",
    }
    for metric, period_label, value in rows.values_list("metric", "period", "value"):
        if period_label in series and value is not None:
            setattr(series[period_label], attribute[metric], value)
    return list(series.values())


@dataclass
class ScopeRow:
    """One partner's or join source's values for a period, by metric."""

    id: int
    values: dict[str, Decimal | None] = field(default_factory=dict)

    def get(self, metric: str) -> Decimal | None:
        return self.values.get(metric)


def join_source_values(
    period: Period, metrics: tuple[str, ...], *, attribution_model: str | None = None
) -> dict[int, dict[str, Decimal | None]]:
    """join_source_id -> metric -> value for the period. One query."""
    result: dict[int, dict[str, Decimal | None]] = defaultdict(dict)
    rows = published_values(
        grain=period.grain,
        attribution_model=attribution_model,
        scope=Scope.JOIN_SOURCE,
        metrics=list(metrics),
    ).filter(period=period.label)
    for source_id, metric, value in rows.values_list("join_source_id", "metric", "value"):
        result[source_id][metric] = value
    return result


def annotate_partner_values(
    queryset: QuerySet[Partner],
    period: Period,
    metrics: tuple[str, ...],
    *,
    attribution_model: str | None = None,
) -> QuerySet[Partner]:
    """Partners annotated `kpi_<metric>` with their published value for the period, in the database,
    so the leaderboard can sort and paginate on them."""
    model = attribution_model or ProgramSettings.load().attribution_model
    annotations: dict[str, BaseExpression] = {}
    for metric in metrics:
        value = (
            published_values(
                grain=period.grain, attribution_model=model, scope=Scope.PARTNER, metrics=[metric]
            )
            .filter(scope_key=OuterRef("export_key_"), period=period.label)
            .values("value")[:1]
        )
        # A partner without facts has no stored row: money and counts read 0, ratios stay undefined.
        if zero_when_empty(metric):
            annotations[f"kpi_{metric}"] = Coalesce(
                Subquery(value), Value(Decimal(0)), output_field=DecimalField()
            )
        else:
            annotations[f"kpi_{metric}"] = Subquery(value)
    # Matching on scope_key (the partner's export key) lets the lookup use the published set's
    # unique index on every column it filters, on SQLite and PostgreSQL alike.
    return queryset.annotate(export_key_=partner_export_key()).annotate(**annotations)


def partner_export_key() -> BaseExpression:
    """A partner's export key in SQL: its key, or its id when it has none."""
    return Coalesce(NullIf(F("key"), Value("")), Cast("pk", output_field=CharField()))


def partner_cohort_values(
    partner_id: int, metrics: tuple[str, ...], *, attribution_model: str | None = None
) -> dict[str, Decimal | None]:
    """A partner's own cohort row (first sales, time to first sale), keyed by its join month."""
    rows = published_values(
        grain=Grain.MONTH,
        attribution_model=attribution_model,
        scope=Scope.PARTNER,
        partner_id=partner_id,
        metrics=metrics,
    )
    return dict(rows.order_by("period_start").values_list("metric", "value"))
