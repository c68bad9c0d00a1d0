"""Test helpers: publish a hand-written KPI set exactly as a finished run would leave it."""

from decimal import Decimal

from django.utils import timezone

from kpis.metrics import Grain, Scope
from kpis.models import KpiRun, KpiValue
from kpis.periods import parse_period
from program.models import ProgramSettings


def publish(values: list[tuple], *, attribution_model: str | None = None) -> KpiRun:
    """Publish `(scope_object_or_None, period_label, metric, value[, target_metric])` rows.

    The scope object is None for the program, a Partner or a JoinSource; values are strings or
    Decimals (None for undefined). Returns the succeeded run that owns them.
    """
    from partners.models import JoinSource, Partner

    model = attribution_model or ProgramSettings.load().attribution_model
    now = timezone.now()
    run = KpiRun.objects.create(
        trigger=KpiRun.Trigger.COMMAND,
        status=KpiRun.Status.SUCCEEDED,
        attribution_model=model,
        started_at=now,
        finished_at=now,
        as_of=timezone.localdate(),
    )
    rows = []
    for item in values:
        owner, label, metric, value = item[:4]
        target_metric = item[4] if len(item) > 4 else ""
        period = parse_period(label)
        row = KpiValue(
            grain=Grain(period.grain).value,
            period=label,
            period_start=period.start,
            metric=metric,
            target_metric=target_metric,
            attribution_model=model,
            value=Decimal(value) if value is not None else None,
            run=run,
            scope=Scope.PROGRAM,
        )
        if isinstance(owner, Partner):
            row.scope, row.scope_key, row.partner = Scope.PARTNER, owner.export_key, owner
        elif isinstance(owner, JoinSource):
            row.scope, row.scope_key, row.join_source = Scope.JOIN_SOURCE, owner.export_key, owner
        rows.append(row)
    KpiValue.objects.bulk_create(rows)
    return run
