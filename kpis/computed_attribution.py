"""Attribution computed on request, before any run has published facts to read (the explorer and
/api/v1/kpi-attribution/ read kpis.published_attribution otherwise).

The engine builds the facts of only the deals won on the dates asked for, and their touches
(kpis.engine.attribution.totals), under a KPI run's session settings (kpis.engine.session) and the
request's own statement timeout.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.exceptions import ValidationError

from kpis.engine import EngineSettings, KpiComputation
from kpis.engine.session import engine_transaction
from program.attribution import AttributionModel
from program.models import ProgramSettings, program_today


def attribution_by_partner(*, model: str, period_from: date, period_to: date) -> list[dict[str, Any]]:
    """Per partner: sourced, influenced and attributed revenue of deals won between the two dates
    (program-time-zone close dates, both included), under any attribution model, computed now.
    """
    try:
        model = AttributionModel(model).value
    except ValueError:
        raise ValidationError(
            {"model": [f"must be one of {', '.join(m.value for m in AttributionModel)}"]}
        ) from None
    if period_from > period_to:
        raise ValidationError({"period_from": ["must not be after period_to"]})
    program = ProgramSettings.load()
    computation = KpiComputation(EngineSettings.from_program(program, model=model), program_today())
    # A KPI run's settings (its work_mem: with the default 4 MB one model for one month at 1M
    # deals ran past 240 s, with 256 MB 13.6 s, when it still built every deal's facts).
    with engine_transaction():
        computation.drop()
        rows = computation.attribution_totals(period_from, period_to)
        computation.drop()
    return rows
