"""KPI runs that recover by themselves: the heartbeat and its lease, replacing a run whose worker
died, sending again a run no worker took, releasing a stuck run by hand, and Redis's visibility
timeout (docs/kpis.md "Runs that recover by themselves").

One rule holds it together: a run that is not `running` never publishes (`publish` checks it under
the runs lock). So a run taken for dead and replaced cannot publish after its replacement, even if
its worker was only slow, and the replacement computes the whole set again: the published set is
always exactly one run's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from celery import Celery, current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from kpis.models import KpiRun
from program.models import ProgramSettings

logger = logging.getLogger(__name__)

ACTIVE = (KpiRun.Status.QUEUED, KpiRun.Status.RUNNING)
# Redis delivers an unacknowledged task again after this many times the longest measured run ...
VISIBILITY_RUN_FACTOR = 3
# ... and never sooner than this many times the lease plus the reaper's interval (the time it
# takes to replace a dead run), so a dead worker's message comes back after its run was replaced.
VISIBILITY_LEASE_FACTOR = 10


class RunReleased(RuntimeError):
    """The run was ended (taken for dead, or released by hand) while this process computed it."""


def lock_runs() -> None:
    """Serialise run bookkeeping: a row lock on the settings singleton (SQLite: the write lock)."""
    ProgramSettings.load()
    list(ProgramSettings.objects.select_for_update().filter(pk=1).values_list("pk", flat=True))


# -- heartbeat ---------------------------------------------------------------------------------
@contextlib.contextmanager
def heartbeat(run_id: int) -> Iterator[None]:
    """While the block runs, stamp the run's `heartbeat_at` every KPI_RUN_HEARTBEAT_SECONDS from a
    thread with a database session of its own (so a long statement or transaction of the run does
    not hold it back). It stops by itself once the run is no longer running.

    Inside a caller's transaction there is none: other sessions could not see the run's row anyway.
    """
    if connection.in_atomic_block:
        yield
        return
    stop = threading.Event()
    interval = settings.KPI_RUN_HEARTBEAT_SECONDS

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    alive = KpiRun.objects.filter(pk=run_id, status=KpiRun.Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError:
                    logger.warning("KPI run %s: heartbeat not recorded", run_id, exc_info=True)
                    connection.close()  # possibly broken: the next beat reconnects
                    continue
                if not alive:
                    return
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"kpi-heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval)


def ensure_running(run_id: int) -> None:
    """Raise RunReleased unless the run is still running; call under `lock_runs`."""
    run = KpiRun.objects.filter(pk=run_id).values("status", "released_by", "error").first()
    if run is None or run.get("status") != KpiRun.Status.RUNNING:
        who = f" by {run['released_by']}" if run and run["released_by"] else ""
        raise RunReleased(f"KPI run {run_id} was ended{who} while it computed; it publishes nothing")


# -- ending and replacing runs (all under `lock_runs`) -----------------------------------------
def describe_silence(run: KpiRun) -> str:
    """Why a run counts as stuck, in words for its record and the log."""
    last = run.last_sign_of_life
    seconds = (timezone.now() - last).total_seconds()
    if run.status == KpiRun.Status.RUNNING:
        what = "heartbeat" if run.heartbeat_at else "start"
        return (
            f"no sign of life for {seconds:.0f} s (last {what} {last:%Y-%m-%d %H:%M:%S} UTC, "
            f"lease {settings.KPI_RUN_LEASE_SECONDS} s)"
        )
    return f"queued for {seconds:.0f} s (since {last:%Y-%m-%d %H:%M:%S} UTC) without a worker taking it"


def end_run(run: KpiRun, *, by: str, reason: str) -> None:
    """Mark an active run failed: who ended it, and why."""
    run.status = KpiRun.Status.FAILED
    run.finished_at = timezone.now()
    run.released_by = by[:200]
    run.error = reason[:5000]
    run.save(update_fields=["status", "finished_at", "released_by", "error"])
    logger.warning("KPI run %s ended by %s: %s", run.pk, by, reason)


def replace_run(run: KpiRun, *, by: str, reason: str) -> KpiRun:
    """End the run and queue another in its place: the same request (trigger, mode, requester,
    as-of date, queue) computed again from the start, one attempt further."""
    end_run(run, by=by, reason=reason)
    replacement = KpiRun.objects.create(
        trigger=run.trigger,
        mode=run.mode,
        requested_by=run.requested_by,
        as_of=run.as_of,
        attribution_model=ProgramSettings.load().attribution_model,
        queue=run.queue,
        attempt=run.attempt + 1,
        replaces=run,
    )
    run.error = f"{run.error}; replaced by run #{replacement.pk}"[:5000]
    run.save(update_fields=["error"])
    logger.warning("KPI run %s replaced by run %s (attempt %s)", run.pk, replacement.pk, replacement.attempt)
    return replacement


def recover_abandoned(run: KpiRun, *, by: str) -> KpiRun | None:
    """A running run whose lease expired: its replacement, or None when its worker died
    KPI_RUN_MAX_ATTEMPTS times in a row already (the run then just fails)."""
    reason = f"abandoned: {describe_silence(run)}"
    if run.attempt >= settings.KPI_RUN_MAX_ATTEMPTS:
        end_run(
            run,
            by=by,
            reason=f"{reason}; not replaced: attempt {run.attempt} of a run whose worker "
            f"died every time (KPI_RUN_MAX_ATTEMPTS={settings.KPI_RUN_MAX_ATTEMPTS})",
        )
        return None
    return replace_run(run, by=by, reason=reason)


def dispatch(run: KpiRun) -> None:
    """Send the run's task to its queue once the transaction commits, noting when.

    A send that fails (the broker down) is logged, not raised: the run stays queued and the reaper
    sends it again once KPI_RUN_QUEUED_RESEND_SECONDS have passed.
    """
    run.dispatched_at = timezone.now()
    KpiRun.objects.filter(pk=run.pk).update(dispatched_at=run.dispatched_at)
    kwargs = {"run_id": run.pk, "trigger": run.trigger, "mode": run.mode}
    send_after_commit("kpis.tasks.recompute_kpis", kwargs, queue=run.queue or None, robust=True)


def send_after_commit(
    task: str, kwargs: dict[str, object], *, queue: str | None, robust: bool = False
) -> None:
    """Send the KPI task named `task` once the transaction commits. The task is looked up in the
    Celery app's registry by name: kpis.tasks imports the services, which never import it back. The
    app is Celery's current one (prm/celery.py, loaded with the prm package), so kpis/ does not
    import the project's wiring above it (the import-linter layers, docs/architecture.md).
    `robust`: a failed send is logged, not raised (the reaper sends a queued run again)."""
    options: dict[str, Any] = {"queue": queue} if queue else {}  # None: the task's default queue
    transaction.on_commit(
        lambda: current_app.tasks[task].apply_async(kwargs=kwargs, **options), robust=robust
    )


# -- the reaper --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reaped:
    replaced: list[tuple[int, int | None]]  # (abandoned run, its replacement or None)
    resent: list[int]

    def __bool__(self) -> bool:
        return bool(self.replaced or self.resent)


def reap(*, by: str = "reaper") -> Reaped:
    """Replace each running run whose lease expired (and send its replacement); send again each
    queued run that no worker took within KPI_RUN_QUEUED_RESEND_SECONDS (a duplicate message is
    harmless: only one delivery can claim the run)."""
    replaced: list[tuple[int, int | None]] = []
    resent: list[int] = []
    with transaction.atomic():
        lock_runs()
        now = timezone.now()
        for run in KpiRun.objects.abandoned(now).select_for_update().order_by("id"):
            replacement = recover_abandoned(run, by=by)
            if replacement is not None:
                dispatch(replacement)
            replaced.append((run.pk, replacement.pk if replacement else None))
        for run in KpiRun.objects.unclaimed(now).select_for_update().order_by("id"):
            logger.warning("KPI run %s: %s; sending it again", run.pk, describe_silence(run))
            dispatch(run)
            resent.append(run.pk)
    return Reaped(replaced=replaced, resent=resent)


# -- releasing by hand -------------------------------------------------------------------------
def release_run(
    run_id: int, *, by: str, force: bool = False, requeue: bool = True
) -> tuple[KpiRun, KpiRun | None]:
    """End a stuck run for an operator (`by` names them) and, with `requeue`, queue and send a
    replacement in its place. A run whose worker is alive is released only with `force` (it then
    publishes nothing). Returns (the released run, its replacement or None).

    Raises ValidationError when the run does not exist, has finished or (without force) is alive.
    """
    with transaction.atomic():
        lock_runs()
        run = KpiRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise ValidationError({"run": [f"there is no KPI run #{run_id}"]})
        if run.status not in ACTIVE:
            raise ValidationError(
                {"run": [f"KPI run #{run_id} has finished ({run.status}); nothing to release"]}
            )
        stuck = run.is_stuck()
        if not stuck and not force:
            raise ValidationError(
                {
                    "run": [
                        f"KPI run #{run_id} is {run.status} and not stuck (last sign of life "
                        f"{run.last_sign_of_life:%Y-%m-%d %H:%M:%S} UTC); release it with force only "
                        "if its worker is known to be gone"
                    ]
                }
            )
        reason = f"released by {by}: " + (describe_silence(run) if stuck else f"{run.status}, forced")
        if not requeue:
            end_run(run, by=by, reason=reason)
            return run, None
        replacement = replace_run(run, by=by, reason=reason)
        dispatch(replacement)
        return run, replacement


# -- Redis visibility timeout ------------------------------------------------------------------
def visibility_timeout() -> tuple[int, str]:
    """(seconds, how they were found): CELERY_VISIBILITY_TIMEOUT when set, else the longest
    successful run measured times VISIBILITY_RUN_FACTOR, at least VISIBILITY_LEASE_FACTOR times
    (lease + reaper interval)."""
    override = getattr(settings, "CELERY_VISIBILITY_TIMEOUT", 0)
    if override:
        return override, "CELERY_VISIBILITY_TIMEOUT"
    floor = VISIBILITY_LEASE_FACTOR * (settings.KPI_RUN_LEASE_SECONDS + settings.KPI_REAPER_SECONDS)
    longest = (
        KpiRun.objects.filter(status=KpiRun.Status.SUCCEEDED, duration_seconds__isnull=False).aggregate(
            longest=Max("duration_seconds")
        )["longest"]
        or 0.0
    )
    derived = math.ceil(VISIBILITY_RUN_FACTOR * longest)
    how = (
        f"{VISIBILITY_RUN_FACTOR} x the longest KPI run ({longest:.1f} s) = {derived} s, "
        f"floor {VISIBILITY_LEASE_FACTOR} x (lease {settings.KPI_RUN_LEASE_SECONDS} s + reaper "
        f"{settings.KPI_REAPER_SECONDS} s) = {floor} s"
    )
    return max(floor, derived), how


def configure_visibility_timeout(app: Celery) -> int | None:
    """Set the app's Redis visibility timeout from `visibility_timeout()` (a worker calls this as it
    starts); None on another broker. With the database unreachable the configured floor stays."""
    options = dict(app.conf.broker_transport_options or {})
    if "visibility_timeout" not in options:
        return None
    try:
        seconds, how = visibility_timeout()
    except DatabaseError:
        logger.warning(
            "Redis visibility timeout: database unreachable, keeping %s s", options["visibility_timeout"]
        )
        return int(options["visibility_timeout"])
    finally:
        connection.close()  # the worker forks its pool next: no child may share this session
    options["visibility_timeout"] = seconds
    app.conf.broker_transport_options = options
    logger.info("Redis visibility timeout %s s (%s)", seconds, how)
    return seconds
