"""Celery tasks of the KPI engine: thin wrappers around kpis.services."""

from typing import Any

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from kpis.explorer import store_opening_range
from kpis.forecast_store import forecast_snapshot_compute
from kpis.recovery import reap
from kpis.services import kpi_chunk_execute, kpi_task_run

# Late acks with reject-on-worker-lost: a killed worker's task is redelivered; database outages
# retry with backoff.
PRODUCTION_SAFE: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(bind=True, **PRODUCTION_SAFE)
def recompute_kpis(
    self: Task[Any, Any], run_id: int | None = None, trigger: str = "manual", mode: str = "full"
) -> int | None:
    """Execute a queued KPI run, or create one first (kpis.services.kpi_task_run), on this
    task's queue."""
    queue = (self.request.delivery_info or {}).get("routing_key") or None
    return kpi_task_run(run_id=run_id, trigger=trigger, mode=mode, queue=queue, task_id=self.request.id or "")


@shared_task(bind=False, **PRODUCTION_SAFE)
def compute_kpi_chunk(run_id: int, number: int) -> None:
    """One chunk of a run split by KPI_CHUNKS; any worker takes it, the last one publishes."""
    kpi_chunk_execute(run_id=run_id, number=number)


@shared_task
def reap_kpi_runs() -> None:
    """Beat, every KPI_REAPER_SECONDS: replace the runs whose worker died, send again the queued
    runs no worker took (kpis.recovery.reap)."""
    reap()


@shared_task(bind=False, **PRODUCTION_SAFE)
def compute_forecast(run_id: int | None = None) -> int:
    """The pipeline forecast, computed and stored once a KPI run's publication committed (`run_id`)
    or when a page found none (kpis.forecast_store); returns the snapshot's id."""
    return forecast_snapshot_compute(run_id=run_id).pk


@shared_task(bind=False, **PRODUCTION_SAFE)
def store_explorer_opening_range(run_id: int | None = None) -> int | None:
    """The attribution explorer's opening range stored once a KPI run's publication committed
    (`run_id`, for the log); returns the stored range's id."""
    stored = store_opening_range()
    return stored.pk if stored else None
