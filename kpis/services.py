"""KPI writes, the app's entry points: request and create recompute runs (here), execute them
(kpis.run_execution, chunked: kpis.run_chunks, published: kpis.run_publication), costs and
targets (kpis.costs), attribution computed on request (kpis.computed_attribution) and the
reconciliation report (kpis.reconciliation).

The names other apps, the Celery tasks and the management commands call are importable from here.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction

from kpis.computed_attribution import attribution_by_partner
from kpis.costs import cost_entry_create, target_set
from kpis.models import KpiRun
from kpis.reconciliation import reconciliation_items
from kpis.recovery import describe_silence, dispatch, end_run, lock_runs
from kpis.run_chunks import kpi_chunk_execute
from kpis.run_execution import kpi_run_execute
from kpis.run_publication import drop_unused_namespaces, state_run_id
from program.models import ProgramSettings
from program.validation import date_errors

__all__ = [
    "attribution_by_partner",
    "cost_entry_create",
    "kpi_chunk_execute",
    "kpi_recompute_request",
    "kpi_run_create",
    "kpi_run_execute",
    "kpi_task_run",
    "reconciliation_report",
    "target_set",
]


def _requester(trigger: str, requested_by: User | None) -> str:
    return f"a new {trigger} request" + (f" ({requested_by.get_username()})" if requested_by else "")


def kpi_run_create(
    *,
    trigger: str,
    mode: str = KpiRun.Mode.FULL,
    requested_by: User | None = None,
    as_of: date | None = None,
) -> tuple[KpiRun, bool]:
    """A new queued run, or (active_run, False) when one is already queued or running.

    An active run that is stuck (running with an expired lease, or queued with no worker taking it:
    `KpiRun.is_stuck`) does not block the request: it is ended, and the new run takes its place.
    """
    errors: dict[str, list[str]] = {}
    if trigger not in KpiRun.Trigger.values:
        errors["trigger"] = [f"must be one of {', '.join(KpiRun.Trigger.values)}"]
    if mode not in KpiRun.Mode.values:
        errors["mode"] = [f"must be one of {', '.join(KpiRun.Mode.values)}"]
    if as_of is not None and (messages := date_errors(as_of)):
        errors["as_of"] = messages
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        lock_runs()
        active = (
            KpiRun.objects.filter(status__in=[KpiRun.Status.QUEUED, KpiRun.Status.RUNNING])
            .order_by("created_at", "id")
            .first()
        )
        superseded = None
        if active is not None and active.is_stuck():
            superseded = active
            by = _requester(trigger, requested_by)
            end_run(active, by=by, reason=f"abandoned: {describe_silence(active)}; superseded by {by}")
            active = None
        # A run whose worker died leaves its tables behind; the published set's state stays.
        drop_unused_namespaces(keep=state_run_id())
        if active is not None:
            return active, False
        run = KpiRun.objects.create(
            trigger=trigger,
            mode=mode,
            requested_by=requested_by,
            as_of=as_of,
            attribution_model=ProgramSettings.load().attribution_model,
            replaces=superseded,
        )
        if superseded is not None:
            superseded.error = f"{superseded.error} (run #{run.pk})"[:5000]
            superseded.save(update_fields=["error"])
        return run, True


def kpi_recompute_request(
    *,
    trigger: str,
    mode: str = KpiRun.Mode.FULL,
    requested_by: User | None = None,
    as_of: date | None = None,
) -> KpiRun:
    """Queue a recompute and enqueue the Celery task on commit; returns the active run if one exists."""
    with transaction.atomic():
        run, created = kpi_run_create(trigger=trigger, mode=mode, requested_by=requested_by, as_of=as_of)
        if created:
            dispatch(run)
    return run


def kpi_task_run(
    *, run_id: int | None, trigger: str, mode: str, queue: str | None, task_id: str
) -> int | None:
    """What the Celery task does: execute the queued run `run_id`; without one (the nightly beat
    entry) create one first, unless another run is queued or running (it is left to that run).
    Chunks of a split run, and a replacement of the run, go to `queue`, the task's own."""
    if run_id is None:
        run, created = kpi_run_create(trigger=trigger, mode=mode)
        if not created:
            return run.pk
        run_id = run.pk
    return kpi_run_execute(run_id=run_id, dispatch="celery", queue=queue, task_id=task_id).pk


def reconciliation_report() -> list[dict[str, Any]]:
    """The suspicious facts listed by the last published run (see KPIS.md "Data quality")."""
    return reconciliation_items()
