"""The stored pipeline forecast: computed once after each KPI publication, read by the pages.

Computing the forecast and its four-quarter backtest reads every deal open at five moments (17.7 s
at 1M deals, docs/benchmarks.md): far too slow per request, and it changes only with the data.
So a Celery task (kpis.tasks.compute_forecast), sent once a publication commits (and by the
`compute_forecast` command, and by a page that finds none yet), computes it with
`kpis.forecast.pipeline_forecast` — the one definition of the method, docs/kpis.md "Forecast" —
and stores it as a ForecastSnapshot with one ForecastRow per scope, in one transaction: a reader
sees the new snapshot whole, or the previous one. Only the latest FORECAST_SNAPSHOTS_KEPT stay.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from kpis.forecast import BacktestQuarter, Forecast, Rate, ScopeForecast, pipeline_forecast
from kpis.models import ForecastRow, ForecastSnapshot, KpiRun
from kpis.recovery import send_after_commit
from partners.models import Partner
from program.models import program_today

logger = logging.getLogger(__name__)

TASK = "kpis.tasks.compute_forecast"
# A page that finds no snapshot asks for one at most this often (the cache key below).
REQUEST_EVERY_SECONDS = 300
_REQUESTED_KEY = "kpis:forecast:requested"
MONEY_FIELDS = (
    "sourced",
    "influenced",
    "backtest_sourced",
    "backtest_influenced",
    "actual_sourced",
    "actual_influenced",
)


def forecast_snapshot_compute(
    *,
    run_id: int | None = None,
    again: bool = False,
    as_of: date | None = None,
    now: datetime | None = None,
) -> ForecastSnapshot:
    """Compute the forecast and store it as the latest snapshot (what the task and the command
    call): as of today, from the deals open now (`as_of`, `now`: another moment, for tests),
    following the publication of run `run_id`. A snapshot already stored after that run (a
    redelivered task, or the command was quicker) is returned as is, unless `again`."""
    if run_id is not None and not again:
        done = ForecastSnapshot.objects.filter(run_id=run_id).first()
        if done is not None:
            return done
    started = time.monotonic()
    now = now or timezone.now()
    forecast = pipeline_forecast(as_of=as_of or program_today(), now=now)
    return _store(forecast, run_id=run_id, now=now, seconds=time.monotonic() - started)


def _store(forecast: Forecast, *, run_id: int | None, now: datetime, seconds: float) -> ForecastSnapshot:
    """One transaction: the snapshot, its rows, and the oldest snapshots beyond the kept number."""
    rows = [(0, forecast.program)]
    rows += list(enumerate(forecast.join_sources)) + list(enumerate(forecast.partners))
    with transaction.atomic():
        snapshot = ForecastSnapshot.objects.create(
            run=KpiRun.objects.filter(pk=run_id).first() if run_id is not None else None,
            as_of=forecast.as_of,
            quarter=forecast.quarter,
            computed_at=now,
            duration_seconds=seconds,
            rates=[
                {"segment": r.segment, "bucket": r.bucket, "won": r.won, "open": r.open}
                for r in forecast.rates
            ],
            backtest=[
                {
                    "quarter": b.quarter,
                    "forecast_sourced": str(b.forecast_sourced),
                    "forecast_influenced": str(b.forecast_influenced),
                    "actual_sourced": str(b.actual_sourced),
                    "actual_influenced": str(b.actual_influenced),
                }
                for b in forecast.backtest
            ],
        )
        ForecastRow.objects.bulk_create(
            (
                ForecastRow(
                    snapshot=snapshot,
                    scope=row.scope,
                    scope_id=row.scope_id,
                    position=position,
                    name=row.name[:200],
                    **{field: getattr(row, field) for field in MONEY_FIELDS},
                )
                for position, row in rows
            ),
            batch_size=2000,
        )
        kept = ForecastSnapshot.objects.order_by("-id").values_list("pk", flat=True)[
            : settings.FORECAST_SNAPSHOTS_KEPT
        ]
        ForecastSnapshot.objects.exclude(pk__in=list(kept)).delete()
    logger.info(
        "Forecast #%s (%s, as of %s): %s scopes in %.1f s",
        snapshot.pk,
        snapshot.quarter,
        snapshot.as_of,
        len(rows),
        seconds,
    )
    return snapshot


def forecast_after_publication(run: KpiRun) -> None:
    """Inside a run's publishing transaction: send the forecast's task once it commits (so the
    publication is not held open by it), on the run's queue."""
    send_after_commit(TASK, {"run_id": run.pk}, queue=run.queue or None, robust=True)


def forecast_requested() -> bool:
    """No snapshot yet (a fresh install): send the task, at most once per REQUEST_EVERY_SECONDS
    whoever asks; True if this call sent it."""
    if not cache.add(_REQUESTED_KEY, timezone.now().isoformat(), timeout=REQUEST_EVERY_SECONDS):
        return False
    send_after_commit(TASK, {}, queue=None, robust=True)
    return True


# -- reading --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredForecast:
    """The latest snapshot: its summary (`forecast`: rates, backtest, program, join sources; the
    partners are read a page at a time from `partner_rows()`) and when it was computed."""

    snapshot: ForecastSnapshot
    forecast: Forecast

    @property
    def computed_at(self) -> datetime:
        return self.snapshot.computed_at

    def partner_rows(self) -> QuerySet[ForecastRow]:
        return self.snapshot.rows.filter(scope="partner").order_by("position")


def latest_snapshot() -> ForecastSnapshot | None:
    return ForecastSnapshot.objects.order_by("-id").first()


def scope_forecast(row: ForecastRow) -> ScopeForecast:
    return ScopeForecast(
        scope=row.scope,
        scope_id=row.scope_id,
        name=row.name,
        **{field: getattr(row, field) for field in MONEY_FIELDS},
    )


def stored_forecast(*, with_partners: bool = False) -> StoredForecast | None:
    """The latest snapshot as a Forecast (`with_partners`: every partner's row too, the whole
    forecast; the pages and the API read theirs a page at a time from `partner_rows()`); None
    before the first one. Two queries (three with the partners), on indexes."""
    snapshot = latest_snapshot()
    if snapshot is None:
        return None
    scopes = ["program", "join_source"] + (["partner"] if with_partners else [])
    # As tuples, not model instances: 10,000 partners at 1M deals.
    rows = [
        ScopeForecast(*values)
        for values in snapshot.rows.filter(scope__in=scopes)
        .order_by("scope", "position")
        .values_list("scope", "scope_id", "name", *MONEY_FIELDS)
    ]
    program = next((r for r in rows if r.scope == "program"), None)
    forecast = Forecast(
        quarter=snapshot.quarter,
        as_of=snapshot.as_of,
        rates=[Rate(r["segment"], r["bucket"], r["won"], r["open"]) for r in snapshot.rates],
        program=program or ScopeForecast("program", 0, "Program"),
        join_sources=[r for r in rows if r.scope == "join_source"],
        partners=[r for r in rows if r.scope == "partner"],
        backtest=[
            BacktestQuarter(
                b["quarter"],
                Decimal(b["forecast_sourced"]),
                Decimal(b["forecast_influenced"]),
                Decimal(b["actual_sourced"]),
                Decimal(b["actual_influenced"]),
            )
            for b in snapshot.backtest
        ],
    )
    return StoredForecast(snapshot, forecast)


def stored_partner_forecast(partner: Partner) -> tuple[ForecastSnapshot, ScopeForecast] | None:
    """The latest snapshot and the one partner's row of it (zero when it had no open deal or
    history): what the portal shows a partner of its own pipeline. None before the first one."""
    snapshot = latest_snapshot()
    if snapshot is None:
        return None
    row = snapshot.rows.filter(scope="partner", scope_id=partner.pk).first()
    own = scope_forecast(row) if row is not None else ScopeForecast("partner", partner.pk, partner.name)
    own.name = partner.name
    return snapshot, own
