"""Reads of the published KPI set that the API, the dashboards, the portal and the export share,
and the costs and targets a user may see (`visible_*`, scoped by `partners.access.row_scope`).

The KpiValue table holds only the published set, so these never see a half-written run.
"""

import secrets
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypedDict

from django.db import connection
from django.db.models import (
    CharField,
    Count,
    DecimalField,
    F,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.expressions import BaseExpression
from django.db.models.functions import Cast, Coalesce, NullIf
from django.utils import timezone

from kpis import formatting
from kpis.metrics import METRICS_BY_NAME, Grain, Scope
from kpis.metrics import label as metric_label
from kpis.models import CostEntry, KpiPublication, KpiRun, KpiValue, ReconciliationItem, Target
from kpis.periods import Period, months_ending, parse_period, period_of, period_or_none
from partners.access import AnyUser, row_scope
from partners.models import Partner
from program.models import ProgramSettings, program_today


def published_values(
    *,
    grain: str,
    attribution_model: str | None = None,
    scope: str | None = None,
    scope_key: str | None = None,
    partner_id: int | None = None,
    join_source_id: int | None = None,
    metrics: Iterable[str] | None = None,
    period_from: str | None = None,
    period_to: str | None = None,
) -> QuerySet[KpiValue]:
    """Published values of one grain, by default under the program's attribution model.

    `period_from` / `period_to` are inclusive period labels of that grain (`2026-03`, `2026-Q1`, `2026`).
    """
    model = attribution_model or ProgramSettings.load().attribution_model
    qs = KpiValue.objects.filter(grain=grain, attribution_model=model)
    if scope is not None:
        qs = qs.filter(scope=scope)
    if scope_key is not None:
        qs = qs.filter(scope_key=scope_key)
    if partner_id is not None:
        qs = qs.filter(partner_id=partner_id)
    if join_source_id is not None:
        qs = qs.filter(join_source_id=join_source_id)
    if metrics is not None:
        qs = qs.filter(metric__in=list(metrics))
    if period_from is not None:
        qs = qs.filter(period__gte=period_from)
    if period_to is not None:
        qs = qs.filter(period__lte=period_to)
    return qs


def latest_successful_run() -> KpiRun | None:
    """The run whose results readers see now ("data as of")."""
    return KpiRun.objects.filter(status=KpiRun.Status.SUCCEEDED).order_by("-finished_at", "-id").first()


def active_run() -> KpiRun | None:
    """A queued or running recompute, if any."""
    return (
        KpiRun.objects.filter(status__in=[KpiRun.Status.QUEUED, KpiRun.Status.RUNNING])
        .order_by("created_at")
        .first()
    )


def _zero_when_empty(metric: str) -> bool:
    from kpis.engine import ZERO_WHEN_EMPTY

    return metric in ZERO_WHEN_EMPTY


class CardValues(TypedDict):
    """One metric's card: its value in the period, the period before, the same period a year
    earlier, its target and progress to it (None where undefined or absent)."""

    current: Decimal | None
    previous: Decimal | None
    last_year: Decimal | None
    target: Decimal | None
    target_progress: Decimal | None
    period: str


def kpi_card_values(
    *,
    metrics: Iterable[str],
    grain: str,
    period: str,
    scope: str = "program",
    scope_key: str = "",
    attribution_model: str | None = None,
) -> dict[str, CardValues]:
    """For each metric: the published value of `period` with the previous period, the same period a
    year earlier, the target and the target progress (None where undefined or absent).

    Partner rows are stored only where the partner has facts, so a missing money/count value reads
    as 0 and a missing ratio, median or target as None. One query for all metrics and periods.
    """
    from kpis.periods import parse_period

    current = parse_period(period)
    if current.grain != grain:
        raise ValueError(f"period {period!r} is not a {grain} period")
    labels = {
        "current": current.label,
        "previous": current.previous.label,
        "last_year": current.year_earlier.label,
    }
    metrics = list(metrics)
    rows = published_values(grain=grain, attribution_model=attribution_model).filter(
        scope=scope, scope_key=scope_key if scope != "program" else "", period__in=list(labels.values())
    )
    rows = rows.filter(metric__in=metrics) | rows.filter(
        metric__in=["target", "target_progress"], target_metric__in=metrics, period=current.label
    )
    found: dict[tuple[str, str, str], Decimal | None] = {
        (v.metric, v.target_metric, v.period): v.value
        for v in rows.only("metric", "target_metric", "period", "value")
    }
    result = {}
    for metric in metrics:
        empty = Decimal(0) if _zero_when_empty(metric) else None
        result[metric] = CardValues(
            current=found.get((metric, "", labels["current"]), empty),
            previous=found.get((metric, "", labels["previous"]), empty),
            last_year=found.get((metric, "", labels["last_year"]), empty),
            target=found.get(("target", metric, current.label)),
            target_progress=found.get(("target_progress", metric, current.label)),
            period=current.label,
        )
    return result


def kpi_series(
    *,
    metrics: Iterable[str],
    grain: str,
    period_from: str,
    period_to: str,
    scope: str = "program",
    scope_key: str = "",
    attribution_model: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Per metric, one entry per period from `period_from` to `period_to` (inclusive, same grain):
    {period, value, previous, last_year, target, target_progress}, read from the published set.
    """
    from kpis.periods import parse_period

    first, last = parse_period(period_from), parse_period(period_to)
    if first.grain != grain or last.grain != grain:
        raise ValueError(f"periods must be {grain} periods")
    metrics = list(metrics)
    span = [first.shifted(i) for i in range(last.index - first.index + 1)]
    labels = sorted({q.label for p in span for q in (p, p.previous, p.year_earlier)})
    rows = published_values(grain=grain, attribution_model=attribution_model).filter(
        scope=scope, scope_key=scope_key if scope != "program" else "", period__in=labels
    )
    rows = rows.filter(metric__in=metrics) | rows.filter(
        metric__in=["target", "target_progress"], target_metric__in=metrics
    )
    found = {
        (v.metric, v.target_metric, v.period): v.value
        for v in rows.only("metric", "target_metric", "period", "value")
    }
    series: dict[str, list[dict[str, Any]]] = {}
    for metric in metrics:
        empty = Decimal(0) if _zero_when_empty(metric) else None
        points = []
        for i in range(last.index - first.index + 1):
            p = first.shifted(i)
            points.append(
                {
                    "period": p.label,
                    "value": found.get((metric, "", p.label), empty),
                    "previous": found.get((metric, "", p.previous.label), empty),
                    "last_year": found.get((metric, "", p.year_earlier.label), empty),
                    "target": found.get(("target", metric, p.label)),
                    "target_progress": found.get(("target_progress", metric, p.label)),
                }
            )
        series[metric] = points
    return series


def reconciliation_items() -> list[dict[str, Any]]:
    """The reconciliation report stored by the last published run (all of it: see
    `iter_reconciliation_items` and `reconciliation_queryset` for lists that grow with the program)."""
    return list(iter_reconciliation_items())


def reconciliation_queryset(kind: str | None = None) -> QuerySet[ReconciliationItem]:
    """The stored items in report order (kind, id), optionally of one kind; for paginating."""
    items = ReconciliationItem.objects.order_by("kind", "id")
    return items.filter(kind=kind) if kind else items


def reconciliation_counts() -> dict[str, int]:
    """Items per kind (one grouped count)."""
    rows = ReconciliationItem.objects.values_list("kind").annotate(n=Count("id")).order_by()
    return {kind: n for kind, n in rows}


def iter_reconciliation_items(kind: str | None = None) -> Iterator[dict[str, Any]]:
    """The report item by item, read in chunks: memory stays flat however long it is."""
    for item in reconciliation_queryset(kind).iterator(chunk_size=2000):
        yield reconciliation_item(item)


def reconciliation_item(
    item: ReconciliationItem, names: Mapping[tuple[str, int], str] | None = None
) -> dict[str, Any]:
    """One stored ReconciliationItem as the report shows it: kind, description and the ids involved;
    with `names` (reconciliation_names), the description names the rows instead of numbering them."""
    ids: dict[str, int | list[int]] = {
        name: value
        for name, value in (
            ("deal", item.deal_id),
            ("partner", item.partner_id),
            ("touch", item.touch_id),
            ("account", item.account_id),
        )
        if value is not None
    }
    if item.registration_ids:
        ids["registrations"] = [int(x) for x in item.registration_ids.split(",")]
    return {
        "kind": item.kind,
        "description": _describe(item.kind, ids, item.description, names or {}),
        "ids": ids,
    }


def reconciliation_names(items: Iterable[ReconciliationItem]) -> dict[tuple[str, int], str]:
    """(kind, id) -> a readable name for the rows a page of items involves. Four queries."""
    from deals.models import Account, Deal, DealRegistration

    items = list(items)
    wanted: dict[str, set[int]] = defaultdict(set)
    for item in items:
        for kind, pk in (("partner", item.partner_id), ("deal", item.deal_id), ("account", item.account_id)):
            if pk is not None:
                wanted[kind].add(pk)
        if item.registration_ids:
            wanted["registrations"].update(int(x) for x in item.registration_ids.split(","))
    names: dict[tuple[str, int], str] = {}
    for pk, name in Partner.objects.filter(pk__in=wanted["partner"]).values_list("pk", "name"):
        names[("partner", pk)] = name
    for pk, name, account in Deal.objects.filter(pk__in=wanted["deal"]).values_list(
        "pk", "name", "account__name"
    ):
        names[("deal", pk)] = f"{name or f'#{pk}'} ({account})"
    for pk, name in Account.objects.filter(pk__in=wanted["account"]).values_list("pk", "name"):
        names[("account", pk)] = name
    registrations = DealRegistration.objects.filter(pk__in=wanted["registrations"]).values_list(
        "pk", "partner__name"
    )
    for pk, partner in registrations:
        names[("registrations", pk)] = f"#{pk} by {partner}"
    return names


def _describe(kind: str, ids: Mapping[str, object], detail: str, names: Mapping[tuple[str, int], str]) -> str:
    def named(what: str, key: str | None = None) -> str:
        pk = ids.get(what)
        found = names.get((key or what, pk)) if isinstance(pk, int) else None
        return found if found is not None else str(pk)

    if kind == "sourced_before_joined":
        return f"Deal {named('deal')} is sourced by partner {named('partner')}, which {detail}."
    if kind == "touch_after_close":
        return (
            f"Touch {ids.get('touch')} by partner {named('partner')} is dated after "
            f"deal {named('deal')} closed."
        )
    registrations = ids.get("registrations")
    regs = (
        ", ".join(names.get(("registrations", r), str(r)) for r in registrations)
        if isinstance(registrations, list)
        else ""
    )
    return f"Registrations {regs} by different partners claim account {named('account')}."


def publication_version() -> str:
    """The token that changes with every write the published-KPI reads could see (KpiPublication)."""
    # Read on every cached API request: plain SQL, since compiling the ORM query costs 3x running it.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT version FROM {KpiPublication._meta.db_table} WHERE id = 1")
        row = cursor.fetchone()
    if row is None:  # a database migrated without the row (the migration creates it)
        return KpiPublication.objects.get_or_create(
            pk=1, defaults={"version": secrets.token_hex(16), "changed_at": timezone.now()}
        )[0].version
    return str(row[0])


def visible_costs(user: AnyUser) -> QuerySet[CostEntry]:
    """The costs `user` may see, each with `counted` (CostEntryQuerySet.with_counted)."""
    sees_all, partner = row_scope(user)
    if sees_all:
        return CostEntry.objects.with_counted()
    if partner is None:
        return CostEntry.objects.none()
    return CostEntry.objects.with_counted().filter(partner=partner)


def visible_targets(user: AnyUser) -> QuerySet[Target]:
    sees_all, partner = row_scope(user)
    if sees_all:
        return Target.objects.all()
    if partner is None:
        return Target.objects.none()
    return Target.objects.filter(partner=partner)


# The read side the dashboards and the portal share (it was dashboards/readers.py): every number
# comes from `published_values`; nothing recomputes a KPI, and each function runs a fixed number of
# queries, whatever the number of partners or periods.

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
        if _zero_when_empty(metric):
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
