"""Executing a KPI run: claim it, compute it (whole in one session, or in chunks: kpis.run_chunks),
publish it (kpis.run_publication), and record how it ended.

A run computes the whole KPI set into session temp tables (kpis.engine), then publishes it in one
short transaction. Database outages put the run back to queued for the task's retry; any other
error fails it. Either way the published set is untouched unless the publication committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from kpis.engine import EngineSettings, KpiComputation, drop_state, fingerprint, run_schema, state
from kpis.forecast_store import forecast_after_publication
from kpis.models import FactChange, ForecastSnapshot, KpiRun
from kpis.recovery import (
    RunReleased,
    describe_silence,
    end_run,
    heartbeat,
    lock_runs,
    recover_abandoned,
)
from kpis.run_chunks import execute_chunked, kpi_chunk_count
from kpis.run_publication import incremental_base, publish_whole, record_facts, run_as_of, state_run_id
from kpis.selectors import publication_version
from program.models import ProgramSettings, program_today

logger = logging.getLogger(__name__)


def claim(run_id: int, *, task_id: str = "", queue: str | None = None) -> KpiRun | None:
    """Mark the run running (with this task's id and queue, and a first heartbeat) and return it;
    None when it has finished, when its worker is alive (a duplicate delivery), or when another
    live run is running.

    A run found running whose lease expired is a redelivery after its worker died: the run is
    replaced (`recover_abandoned`) and this delivery claims the replacement instead.
    """
    with transaction.atomic():
        lock_runs()
        run = KpiRun.objects.select_for_update().get(pk=run_id)
        if run.status in (KpiRun.Status.SUCCEEDED, KpiRun.Status.FAILED):
            return None
        if run.status == KpiRun.Status.RUNNING:
            if not run.is_stuck():
                logger.info("KPI run %s is running on a live worker; this delivery does nothing", run_id)
                return None
            replacement = recover_abandoned(run, by="its redelivered task")
            if replacement is None:
                return None
            run = replacement
        for other in (
            KpiRun.objects.select_for_update().filter(status=KpiRun.Status.RUNNING).exclude(pk=run.pk)
        ):
            if not other.is_stuck():
                end_run(run, by="its task", reason=f"another KPI run (#{other.pk}) was running")
                return None
            end_run(other, by=f"run #{run.pk}'s task", reason=f"abandoned: {describe_silence(other)}")
        now = timezone.now()
        run.status = KpiRun.Status.RUNNING
        run.started_at = now
        run.heartbeat_at = now
        run.error = ""
        run.as_of = run.as_of or program_today()
        run.attribution_model = ProgramSettings.load().attribution_model
        fields = ["status", "started_at", "heartbeat_at", "error", "as_of", "attribution_model"]
        if task_id:
            run.celery_task_id = task_id[:64]
            fields.append("celery_task_id")
        if queue is not None:
            run.queue = queue[:200]
            fields.append("queue")
        run.save(update_fields=fields)
        return run


def _record_failure(run_id: int, status: str, message: str) -> None:
    """A failed run keeps its first error (a chunked run's is the failing chunk's)."""
    for _ in range(2):
        try:
            # Never a run that published: only what failed before its publication committed.
            KpiRun.objects.filter(pk=run_id).exclude(
                status__in=[KpiRun.Status.FAILED, KpiRun.Status.SUCCEEDED]
            ).update(status=status, error=message[:5000], finished_at=timezone.now())
            return
        except DatabaseError:
            connection.close()  # a broken connection: the next query reconnects


def kpi_run_execute(
    *, run_id: int, dispatch: str = "threads", queue: str | None = None, task_id: str = ""
) -> KpiRun:
    """Compute and publish the run (what the Celery task and the command call); returns it, or the
    run that replaced it when its worker had died (`claim`).

    With KPI_CHUNKS > 1 (PostgreSQL) the shared facts are computed here and the scopes in chunks:
    `dispatch="celery"` queues one task per chunk (on `queue`, default the default queue) for any
    worker to take (the last chunk to finish publishes, and the run stays running until then);
    `"threads"` computes them on as many database sessions from this process and returns once
    published.

    Database outages (OperationalError / InterfaceError) put the run back to queued and re-raise,
    so the task's autoretry picks it up again; any other error fails the run. Either way the
    published set is untouched unless the publishing transaction committed. A run ended meanwhile
    (taken for dead, released by hand) stops at its publication and publishes nothing.
    """
    run = claim(run_id, task_id=task_id, queue=queue)
    if run is None:
        return KpiRun.objects.get(pk=run_id)
    started = time.monotonic()
    try:
        with heartbeat(run.pk):
            _execute(run, started, dispatch=dispatch, queue=queue)
    except RunReleased as exc:
        _drop_quietly(run.pk)
        logger.warning("%s", exc)
    except (OperationalError, InterfaceError) as exc:
        _drop_quietly(run.pk)
        _record_failure(run.pk, KpiRun.Status.QUEUED, f"database unavailable, will retry: {exc}")
        raise
    except Exception as exc:
        _drop_quietly(run.pk)
        logger.exception("KPI run %s failed", run.pk)
        _record_failure(run.pk, KpiRun.Status.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    return KpiRun.objects.get(pk=run.pk)


def _drop_quietly(run_id: int | None = None) -> None:
    try:
        KpiComputation(EngineSettings.from_program(ProgramSettings.load()), date.today()).drop()
        if run_id is not None and run_id != state_run_id():
            drop_state(run_id)
    except Exception:  # noqa: BLE001 - cleanup of session temp tables must never hide the real error
        connection.close()


def _fingerprint_alongside(run: KpiRun, program: ProgramSettings) -> Callable[[], None]:
    """Start computing the run's source fingerprint (kpis.engine.fingerprint.alongside: in a
    snapshot taken before the run reads any fact); the returned function waits for it and records
    it on the run."""
    fingerprint_of = fingerprint.alongside(as_of=run_as_of(run), program=program)

    def record() -> None:
        KpiRun.objects.filter(pk=run.pk).update(source_fingerprint=fingerprint_of())

    return record


def _succeed_unchanged(run: KpiRun, started: float, fingerprint_found: str) -> None:
    """The program is as the last run found it: the run succeeds having written nothing."""
    KpiRun.objects.filter(pk=run.pk, status=KpiRun.Status.RUNNING).update(
        status=KpiRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
        duration_seconds=time.monotonic() - started,
        rows_written=0,
        rows_deleted=0,
        periods_recomputed=0,
        source_fingerprint=fingerprint_found,
    )
    if not ForecastSnapshot.objects.filter(as_of=program_today()).exists():
        # Nothing changed since the last run, but today's forecast is missing (it ages the
        # open deals on the day it is made).
        forecast_after_publication(run)


def _execute(run: KpiRun, started: float, *, dispatch: str = "threads", queue: str | None = None) -> None:
    # One read of the settings for the whole run: its record, its fingerprint and every chunk.
    program = ProgramSettings.load()
    last = None
    if run.mode == KpiRun.Mode.INCREMENTAL and not FactChange.objects.exists():
        last = (
            KpiRun.objects.filter(status=KpiRun.Status.SUCCEEDED)
            .exclude(pk=run.pk)
            .order_by("-finished_at", "-id")
            .first()
        )
    # The fingerprint tells an unchanged program only with an empty change log (which closes its
    # blind spot for the tables it covers: a row written under an older clock, or by an `.update()`
    # that left `updated_at` alone) and the same as-of date (part of the fingerprint).
    if last is not None and last.as_of == run.as_of:
        found = fingerprint.source_fingerprint(as_of=run_as_of(run), program=program)
        if last.source_fingerprint == found:
            _succeed_unchanged(run, started, found)
            return
        recorded = {"source_fingerprint": found}
        record_fingerprint = None
    else:
        recorded = {}
        record_fingerprint = _fingerprint_alongside(run, program)
    KpiRun.objects.filter(pk=run.pk).update(attribution_model=program.attribution_model, **recorded)
    # Before anything reads the published set: a write to it after this leaves the run's state
    # untied to the set it publishes (`publish`).
    started_version = publication_version()
    base = incremental_base(run) if run.mode == KpiRun.Mode.INCREMENTAL else None
    if kpi_chunk_count() > 1:
        engine_settings = EngineSettings.from_program(program)
        execute_chunked(
            run,
            dispatch=dispatch,
            queue=queue,
            base=base,
            engine_settings=engine_settings,
            record_fingerprint=record_fingerprint,
            started_version=started_version,
        )
        return
    pg = connection.vendor == "postgresql"
    if pg:
        state.create_run_schema(run.pk)
    computation = KpiComputation(
        EngineSettings.from_program(program),
        run_as_of(run),
        schema=run_schema(run.pk) if pg else None,
        previous=base[0] if base else None,
        state_of=run.pk,
    )
    result = computation.run()
    if record_fingerprint is not None:
        record_fingerprint()
    record_facts(run, result)
    publish_whole(
        run,
        computation,
        base_version=base[1] if base and result.restricted else None,
        started_version=started_version,
    )
