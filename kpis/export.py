"""The INTERCHANGE.md KPI export: rows of the published set (or of one computed on request)."""

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

from kpis.engine import EngineSettings, KpiComputation, staged_rows
from kpis.engine.session import engine_transaction
from kpis.metrics import METRICS_BY_NAME, Grain
from kpis.models import KpiValue
from kpis.periods import parse_period
from program.attribution import AttributionModel
from program.models import ProgramSettings, program_today

EXPORT_COLUMNS = ("scope", "scope_key", "period", "metric", "value", "target_metric")


def format_value(metric: str, target_metric: str, value: Decimal | None) -> str:
    """Money 2 places, rates 4, days 1, counts and flags whole; empty when undefined.

    A target row is formatted like the metric it targets; target_progress is a rate.
    """
    if value is None:
        return ""
    unit_metric = target_metric if metric == "target" and target_metric else metric
    places = METRICS_BY_NAME[unit_metric].decimal_places
    return str(Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def reads_published_set(model: str | None, program: ProgramSettings | None = None) -> bool:
    """Whether the export under `model` (empty: the program's) is the published set read as is,
    rather than a set computed on request."""
    published_model = (program or ProgramSettings.load()).attribution_model
    return not model or AttributionModel(model).value == published_model


def export_rows(
    *,
    grain: str,
    model: str | None = None,
    scope: str | None = None,
    scope_key: str | None = None,
    period_from: str | None = None,
    period_to: str | None = None,
) -> Iterator[dict[str, str]]:
    """Rows in INTERCHANGE export columns, ordered by scope, key, period, metric; optionally of one
    scope, one scope key and periods from `period_from` to `period_to` (inclusive labels of `grain`).

    The published set is read as is. A `model` other than the published one is computed on
    request: the whole set under that model, in temp tables of this connection, never published.
    """
    grain = Grain(grain).value
    program = ProgramSettings.load()
    if reads_published_set(model, program):
        rows = KpiValue.objects.filter(grain=grain, attribution_model=program.attribution_model)
        if scope:
            rows = rows.filter(scope=scope)
        if scope_key is not None:
            rows = rows.filter(scope_key=scope_key)
        if period_from:
            rows = rows.filter(period_start__gte=parse_period(period_from).start)
        if period_to:
            rows = rows.filter(period_start__lte=parse_period(period_to).start)
        ordered = rows.order_by("scope", "scope_key", "period_start", "metric", "target_metric").values_list(
            "scope", "scope_key", "period", "metric", "target_metric", "value"
        )
        yield from (_row(*r) for r in ordered.iterator(chunk_size=5000))
        return
    computation = KpiComputation(EngineSettings.from_program(program, model=model), program_today())
    try:
        # A KPI run's session settings (kpis.engine.session), under the request's statement timeout.
        # Every period is computed: a period's values read the facts of the periods before it
        # (cohorts, activity windows, year-earlier comparisons), as a run computes them.
        with engine_transaction():
            computation.run()
            staged = staged_rows(grain=grain)
    finally:
        computation.drop()
    first = parse_period(period_from).index if period_from else None
    last = parse_period(period_to).index if period_to else None
    for r in staged:
        index = parse_period(r[2]).index
        if (
            (scope and r[0] != scope)
            or (scope_key is not None and r[1] != scope_key)
            or (first is not None and index < first)
            or (last is not None and index > last)
        ):
            continue
        yield _row(*r)


def _row(
    scope: str, scope_key: str, period: str, metric: str, target_metric: str, value: object
) -> dict[str, str]:
    if value is not None and not isinstance(value, Decimal):
        value = Decimal(str(value))
    return {
        "scope": scope,
        "scope_key": scope_key,
        "period": period,
        "metric": metric,
        "value": format_value(metric, target_metric, value),
        "target_metric": target_metric,
    }
