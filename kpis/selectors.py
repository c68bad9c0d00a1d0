"""Reads of the published KPI set that the API, the dashboards and the export share.

The KpiValue table holds only the published set, so these never see a half-written run.
"""

from collections.abc import Iterable

from django.db.models import QuerySet

from kpis.models import KpiRun, KpiValue, ProgramSettings


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
