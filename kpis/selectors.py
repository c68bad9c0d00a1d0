"""Reads of the published KPI set that the API, the dashboards, the portal and the export share,
and the costs and targets a user may see (`visible_*`, scoped by `partners.access.row_scope`).
The dashboards' and the portal's cards, series and tables are kpis.readers; the reconciliation
report kpis.reconciliation.

The KpiValue table holds only the published set, so these never see a half-written run.
"""

import secrets
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, TypedDict

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from kpis.models import CostEntry, KpiPublication, KpiRun, KpiValue, Target
from kpis.periods import parse_period
from partners.access import AnyUser, row_scope
from program.models import ProgramSettings


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


def zero_when_empty(metric: str) -> bool:
    """A missing value of the metric reads 0 (money, counts), not undefined (ratios, medians)."""
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
        empty = Decimal(0) if zero_when_empty(metric) else None
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
        empty = Decimal(0) if zero_when_empty(metric) else None
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
