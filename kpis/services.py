"""KPI writes: recompute runs (request, execute, publish), costs, targets, on-request attribution.

A run computes the whole KPI set into session temp tables (kpis.engine), then publishes it in one
short transaction that deletes the published rows that changed or vanished and inserts the new
ones. Readers (PostgreSQL MVCC, SQLite WAL) keep seeing the previous complete set until it commits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, F, Max
from django.utils import timezone

from deals.models import Deal, DealRegistration, Touch
from events.services import record_event
from events.types import EventType
from kpis.engine import (
    Chunk,
    EngineSettings,
    KpiComputation,
    SessionThread,
    drop_state,
    index_state,
    prune_change_log,
    publication,
    run_schema,
    state,
    state_exists,
    state_runs,
)
from kpis.engine import chunks as chunks_plan
from kpis.forecast_store import forecast_after_publication
from kpis.metrics import TARGETABLE_METRICS
from kpis.models import (
    CostEntry,
    CostEntryLink,
    FactChange,
    ForecastSnapshot,
    KpiPublication,
    KpiRun,
    Target,
)
from kpis.periods import parse_period
from kpis.recovery import (
    RunReleased,
    describe_silence,
    dispatch,
    end_run,
    ensure_running,
    heartbeat,
    recover_abandoned,
    send_after_commit,
)
from kpis.recovery import lock_runs as _lock_runs
from kpis.selectors import publication_version
from partners.models import JoinSource, Partner
from prm.database import transaction_settings
from program.attribution import AttributionModel
from program.models import ProgramSettings, program_today
from program.validation import amount_errors, date_errors, decimal_from_input, target_value_errors

logger = logging.getLogger(__name__)


class PublishedSetChanged(RuntimeError):
    """The published set was written while an incremental run computed on the state describing it."""


def kpi_chunk_count() -> int:
    """How many chunks a run is split into (PostgreSQL only; 1 = computed whole in one session)."""
    return max(1, int(getattr(settings, "KPI_CHUNKS", 1))) if connection.vendor == "postgresql" else 1


# -- runs --------------------------------------------------------------------------------------
def _requester(trigger: str, requested_by) -> str:
    return f"a new {trigger} request" + (f" ({requested_by.get_username()})" if requested_by else "")


def _drop_unused_namespaces(*, keep: int | None) -> None:
    """Drop the tables of every run but `keep` and the queued or running ones (a run claimed just
    after a publication committed may be creating its own)."""
    left = state_runs()
    active = KpiRun.objects.filter(pk__in=left, status__in=[KpiRun.Status.QUEUED, KpiRun.Status.RUNNING])
    for run_id in left - set(active.values_list("pk", flat=True)) - {keep}:
        drop_state(run_id)


def _state_run_id() -> int | None:
    return KpiPublication.objects.filter(pk=1).values_list("state_run_id", flat=True).first()


def _incremental_base(run: KpiRun) -> tuple[int, str] | None:
    """(run id, publication version) of the state an incremental run can diff against: the facts
    of another run that published the set, when nothing has written the set since and the state
    is complete; None otherwise (the run then recomputes every period)."""
    row = KpiPublication.objects.filter(pk=1).values_list("state_run_id", "state_version", "version").first()
    if row is None or row[0] in (None, run.pk) or row[1] != row[2] or not state_exists(row[0]):
        return None
    return row[0], row[2]


def _keep_only_state(run_id: int, computation: KpiComputation | None = None) -> None:
    """After a publication committed: drop every other finished run's tables, and of this run's
    the ones only computing and publishing needed (its facts stay as the state). Best effort: the
    run has succeeded, and what is left goes with the next run's clean-up."""
    try:
        if computation is not None:
            computation.drop()
        if connection.vendor == "postgresql":
            state.drop_work_tables(run_id)
        _drop_unused_namespaces(keep=run_id)
        prune_change_log(run_id)
        if connection.vendor == "postgresql":
            index_state(run_id, cells_changed=computation is None or not computation.result.cells)
    except DatabaseError:
        logger.warning("KPI run %s: clean-up after publishing failed", run_id, exc_info=True)
        if not connection.in_atomic_block:
            connection.close()  # possibly broken: the next query reconnects


def kpi_run_create(
    *, trigger: str, mode: str = KpiRun.Mode.FULL, requested_by=None, as_of: date | None = None
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
        _lock_runs()
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
        _drop_unused_namespaces(keep=_state_run_id())
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
    *, trigger: str, mode: str = KpiRun.Mode.FULL, requested_by=None, as_of: date | None = None
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


def _claim(run_id: int, *, task_id: str = "", queue: str | None = None) -> KpiRun | None:
    """Mark the run running (with this task's id and queue, and a first heartbeat) and return it;
    None when it has finished, when its worker is alive (a duplicate delivery), or when another
    live run is running.

    A run found running whose lease expired is a redelivery after its worker died: the run is
    replaced (`recover_abandoned`) and this delivery claims the replacement instead.
    """
    with transaction.atomic():
        _lock_runs()
        run = KpiRun.objects.select_for_update().get(pk=run_id)
        if run.status in (KpiRun.Status.SUCCEEDED, KpiRun.Status.FAILED):
            return None
        if run.status == KpiRun.Status.RUNNING:
            if not run.is_stuck():
                logger.info("KPI run %s is running on a live worker; this delivery does nothing", run_id)
                return None
            run = recover_abandoned(run, by="its redelivered task")
            if run is None:
                return None
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
    run that replaced it when its worker had died (`_claim`).

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
    run = _claim(run_id, task_id=task_id, queue=queue)
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
        if run_id is not None and run_id != _state_run_id():
            drop_state(run_id)
    except Exception:  # noqa: BLE001 - cleanup of session temp tables must never hide the real error
        connection.close()


def source_fingerprint(*, as_of: date, program: ProgramSettings | None = None) -> str:
    """A digest of everything the KPIs depend on: per-table row counts, newest id and latest change.

    The newest id moves with every insert (a sequence), even when a row is deleted and another
    added and the clocks that stamp `updated_at` disagree; `updated_at` moves with every edit.
    """
    parts = [f"as_of={as_of}"]
    program = program or ProgramSettings.load()
    parts.append(f"settings={program.updated_at.isoformat()}:{EngineSettings.from_program(program)!r}")
    for model in (Deal, DealRegistration, CostEntry, Target, Partner, Touch):
        agg = model.objects.aggregate(n=Count("pk"), newest=Max("pk"), last=Max("updated_at"))
        parts.append(f"{model._meta.label}={agg['n']}:{agg['newest']}:{agg['last']}")
    # Cost entry links have no updated_at: their count and newest id (MDF return reads them).
    links = CostEntryLink.objects.aggregate(n=Count("pk"), newest=Max("pk"))
    parts.append(f"{CostEntryLink._meta.label}={links['n']}:{links['newest']}")
    # Join sources have no updated_at; their keys label published rows, so a rename must count.
    parts.append(f"join_sources={list(JoinSource.objects.order_by('pk').values_list('pk', 'key'))}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest() + ":" + ";".join(parts)[:900]


def _fingerprint_alongside(run: KpiRun, program: ProgramSettings) -> Callable[[], None]:
    """Start computing the run's source fingerprint; the returned function waits for it and
    records it on the run.

    On PostgreSQL outside a transaction it is computed on another session, in a snapshot taken
    before this function returns, so before the run reads any fact: the facts hold at least what
    it describes (a change committed in between makes the next run's fingerprint differ, and that
    run computes). Elsewhere, here and now.
    """

    def record(fingerprint: str) -> None:
        KpiRun.objects.filter(pk=run.pk).update(source_fingerprint=fingerprint)

    if connection.vendor != "postgresql" or connection.in_atomic_block:
        fingerprint = source_fingerprint(as_of=run.as_of, program=program)
        return lambda: record(fingerprint)
    found: dict[str, str] = {}
    snapshot_taken = threading.Event()

    def compute() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SELECT 1")  # takes the transaction's snapshot
            snapshot_taken.set()
            found["fingerprint"] = source_fingerprint(as_of=run.as_of, program=program)

    worker = SessionThread(compute, name="kpi-fingerprint", on_exit=snapshot_taken.set)
    snapshot_taken.wait()

    def finish() -> None:
        worker.finish()
        record(found["fingerprint"])

    return finish


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
        fingerprint = source_fingerprint(as_of=run.as_of, program=program)
        if last.source_fingerprint == fingerprint:
            KpiRun.objects.filter(pk=run.pk, status=KpiRun.Status.RUNNING).update(
                status=KpiRun.Status.SUCCEEDED,
                finished_at=timezone.now(),
                duration_seconds=time.monotonic() - started,
                rows_written=0,
                rows_deleted=0,
                periods_recomputed=0,
                source_fingerprint=fingerprint,
            )
            if not ForecastSnapshot.objects.filter(as_of=program_today()).exists():
                # Nothing changed since the last run, but today's forecast is missing (it ages the
                # open deals on the day it is made).
                forecast_after_publication(run)
            return
        recorded = {"source_fingerprint": fingerprint}
        record_fingerprint = None
    else:
        recorded = {}
        record_fingerprint = _fingerprint_alongside(run, program)
    KpiRun.objects.filter(pk=run.pk).update(attribution_model=program.attribution_model, **recorded)
    # Before anything reads the published set: a write to it after this leaves the run's state
    # untied to the set it publishes (`publish`).
    started_version = publication_version()
    base = _incremental_base(run) if run.mode == KpiRun.Mode.INCREMENTAL else None
    if kpi_chunk_count() > 1:
        engine_settings = EngineSettings.from_program(program)
        _execute_chunked(
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
        run.as_of,
        schema=run_schema(run.pk) if pg else None,
        previous=base[0] if base else None,
        state_of=run.pk,
    )
    result = computation.run()
    if record_fingerprint is not None:
        record_fingerprint()
    _record_facts(run, result)
    _publish_whole(
        run,
        computation,
        base_version=base[1] if result.restricted else None,
        started_version=started_version,
    )


def _publish_whole(
    run: KpiRun, computation: KpiComputation, *, base_version: str | None, started_version: str | None
) -> None:
    """Publish what one session staged (kx_pub), then keep only the run's state."""
    result = computation.result
    with computation.search_path() if computation.schema else contextlib.nullcontext():
        publish(
            run=run,
            on_published=_finisher(run, periods=result.periods_recomputed),
            base_version=base_version,
            cells_of_model=computation.settings.attribution_model if result.cells else None,
            started_version=started_version,
        )
    _keep_only_state(run.pk, computation)


def _record_facts(run: KpiRun, result) -> None:
    """How the run got its facts: patched with so many changed rows (and its cells with them), or
    built in full."""
    changed = result.changed_rows
    KpiRun.objects.filter(pk=run.pk).update(changed_rows=changed)
    logger.info(
        "KPI run %s: facts %s%s",
        run.pk,
        "built in full" if changed is None else f"patched with {changed} changed rows",
        "; cells patched" if result.cells else "",
    )


def _finisher(run: KpiRun, *, periods: int):
    """The bookkeeping that commits with the publication (`periods`: how many it recomputed)."""

    def finish(stats: dict[str, int]) -> None:
        KpiRun.objects.filter(pk=run.pk).update(
            status=KpiRun.Status.SUCCEEDED,
            finished_at=timezone.now(),
            duration_seconds=(timezone.now() - run.started_at).total_seconds(),
            rows_written=stats["inserted"] + stats["updated"],
            rows_deleted=stats["deleted"],
            periods_recomputed=periods,
        )
        record_event(type=EventType.KPI_RUN_PUBLISHED, obj=KpiRun.objects.get(pk=run.pk))
        # Its own task once this commits: the publication is not held open by the forecast.
        forecast_after_publication(run)

    return finish


# -- chunked runs ------------------------------------------------------------------------------
# The program scope is one item to balance: it reads every fact, and costs about as much as this
# share of all partners' rows (measured at 1M deals: docs/benchmarks.md; 0.37 until 2026-12-02,
# when a full rerun's chunks stopped staging unchanged cells, most of which were partners').
PROGRAM_CHUNK_WEIGHT = 0.5


def plan_chunks(weights: list[tuple[int, int]], count: int) -> list[Chunk]:
    """Split the program scope and the join sources (with their partners) into `count` chunks of
    similar weight: greedy, heaviest item first into the lightest chunk."""
    total = float(sum(weight for _, weight in weights))
    items = [(PROGRAM_CHUNK_WEIGHT * total, None)] + [(float(weight), js) for js, weight in weights]
    items.sort(key=lambda item: (-item[0], -1 if item[1] is None else item[1]))
    bins: list[tuple[float, bool, list[int]]] = [(0.0, False, []) for _ in range(max(1, count))]
    for weight, js in items:
        index = min(range(len(bins)), key=lambda i: (bins[i][0], i))
        load, program, sources = bins[index]
        bins[index] = (load + weight, program or js is None, sources + ([] if js is None else [js]))
    return [
        Chunk(program=program, join_sources=tuple(sorted(sources)))
        for _, program, sources in bins
        if program or sources
    ]


def _shared_computation(
    run: KpiRun,
    *,
    previous: int | None = None,
    engine_settings: EngineSettings | None = None,
    cell_base: int | None = None,
) -> KpiComputation:
    program = engine_settings or EngineSettings.from_program(ProgramSettings.load())
    return KpiComputation(
        program,
        run.as_of,
        schema=run_schema(run.pk),
        previous=previous,
        state_of=run.pk,
        cell_base=cell_base,
    )


def _execute_chunked(
    run: KpiRun,
    *,
    dispatch: str,
    queue: str | None,
    engine_settings: EngineSettings,
    base: tuple[int, str] | None = None,
    record_fingerprint: Callable[[], None] | None = None,
    started_version: str | None = None,
) -> None:
    state.create_run_schema(run.pk)
    previous = base[0] if base else None
    # A full run compares its cells with the state of the published set, if there is one: the
    # chunks then stage only the cells that changed (the facts and components are all rebuilt).
    cell_base = _incremental_base(run) if run.mode == KpiRun.Mode.FULL else None
    computation = _shared_computation(
        run, previous=previous, engine_settings=engine_settings, cell_base=cell_base[0] if cell_base else None
    )
    started = time.monotonic()
    result = computation.run_facts()
    if record_fingerprint is not None:
        record_fingerprint()
    _record_facts(run, result)
    if result.cells:
        # The facts' session staged the few cells the changes touched: no chunks to share out.
        _publish_whole(run, computation, base_version=base[1], started_version=started_version)
        return
    chunks = plan_chunks(computation.chunk_weights(), kpi_chunk_count())
    logger.info(
        "KPI run %s: shared facts in %.1f s; %s chunks", run.pk, time.monotonic() - started, len(chunks)
    )
    # Every chunk computes with the settings the shared facts were built with (and the state
    # records), not with settings committed since: one run never mixes attribution models.
    settings_json = json.dumps(dataclasses.asdict(computation.settings))
    base_version = base[1] if base and result.restricted else None
    if result.cell_base is not None and cell_base is not None:
        # Unchanged cells keep their published rows: only while nothing else wrote the set.
        base_version = cell_base[1]
    plan = [
        {
            "n": number,
            "program": chunk.program,
            "join_sources": ",".join(map(str, chunk.join_sources or ())),
            "periods": result.periods_recomputed,
            "base_version": base_version,
            "engine_settings": settings_json,
            "cell_base": result.cell_base,
            "started_version": started_version,
        }
        for number, chunk in enumerate(chunks)
    ]
    with transaction.atomic():
        chunks_plan.write_plan(run.pk, plan)
        if dispatch == "celery":
            for number in range(len(chunks)):
                send_after_commit(
                    "kpis.tasks.compute_kpi_chunk", {"run_id": run.pk, "number": number}, queue=queue
                )
    if dispatch == "celery":
        return
    workers = [
        SessionThread(lambda n=n: kpi_chunk_execute(run_id=run.pk, number=n), name=f"kpi-chunk-{n}")
        for n in range(len(chunks))
    ]
    errors = [error for error in (worker.join() for worker in workers) if error is not None]
    if errors:
        # The chunk's own failure rather than a database error it may have caused a sibling.
        errors.sort(key=lambda exc: isinstance(exc, (OperationalError, InterfaceError)))
        raise errors[0]


def _chunk_computation(
    run: KpiRun, planned: dict, *, compare_cells: bool = True
) -> tuple[KpiComputation, Chunk]:
    """The computation and the chunk of one row of the plan (`compare_cells=False`: staging every
    row, whatever cell base the plan names)."""
    sources = tuple(int(j) for j in planned["join_sources"].split(",") if j)
    # A plan written before chunks stored their settings (a run in flight across an upgrade)
    # falls back to the settings as they are now, as such runs always did.
    stored = planned.get("engine_settings")
    computation = _shared_computation(
        run,
        engine_settings=EngineSettings(**json.loads(stored)) if stored else None,
        cell_base=planned.get("cell_base") if compare_cells else None,
    )
    return computation, Chunk(program=planned["program"], join_sources=sources)


def kpi_chunk_execute(*, run_id: int, number: int) -> None:
    """Compute one chunk of a running run; the last chunk to finish publishes the run.

    Idempotent: a redelivered chunk replaces its own staged rows. Database outages re-raise for
    the task's retry; any other error fails the run.
    """
    run = KpiRun.objects.get(pk=run_id)
    if run.status != KpiRun.Status.RUNNING:
        return  # failed or ended meanwhile, or already published by a redelivered sibling
    with heartbeat(run_id):
        _chunk_execute(run, number)


def _chunk_execute(run: KpiRun, number: int) -> None:
    run_id = run.pk
    try:
        (planned,) = chunks_plan.planned_chunks(run_id, number)
        computation, chunk = _chunk_computation(run, planned)
        started = time.monotonic()
        rows = computation.run_chunk(number, chunk)
        logger.info(
            "KPI run %s: chunk %s, %s rows in %.1f s", run_id, number, rows, time.monotonic() - started
        )
        with transaction.atomic():
            remaining, periods, base_version = chunks_plan.mark_chunk_done(run_id, number)
        if remaining:
            return
        started = time.monotonic()
        with computation.search_path():
            finish = _finisher(run, periods=periods)
            try:
                stats = publish(
                    run=run,
                    on_published=finish,
                    diffed=True,
                    base_version=base_version,
                    # Every row of the plan holds the same (none in a plan from before 2026-12-02).
                    started_version=planned.get("started_version"),
                )
            except PublishedSetChanged:
                if planned.get("cell_base") is None:
                    raise
                # A full run's chunks staged only the cells that changed since the state of a set
                # that has been written since (settings saved, a row by hand): every chunk's rows
                # are staged again here and compared with every published row (a chunk delivered
                # again meanwhile reads the plan without its cell base, and does the same).
                logger.warning("KPI run %s: the published set changed; comparing every row", run_id)
                chunks_plan.forget_cell_base(run_id)
                restaged_from = publication_version()
                for every in chunks_plan.planned_chunks(run_id):
                    again, its_chunk = _chunk_computation(run, every, compare_cells=False)
                    again.run_chunk(every["n"], its_chunk)
                stats = publish(run=run, on_published=finish, diffed=True, started_version=restaged_from)
        logger.info("KPI run %s: published %s in %.1f s", run_id, stats, time.monotonic() - started)
        _keep_only_state(run_id)
    except RunReleased as exc:
        logger.warning("%s (chunk %s)", exc, number)
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        # The first chunk to fail fails the run. Its schema stays while siblings may still read it
        # (dropping it under them deadlocks); it goes when the run's caller or the next run cleans up.
        first = KpiRun.objects.filter(pk=run_id, status=KpiRun.Status.RUNNING).update(
            status=KpiRun.Status.FAILED,
            error=f"chunk {number}: {type(exc).__name__}: {exc}"[:5000],
            finished_at=timezone.now(),
        )
        if first:
            logger.exception("KPI run %s chunk %s failed", run_id, number)
        raise


def publish(
    *,
    run: KpiRun,
    on_published: Callable[[dict[str, int]], None] | None = None,
    diffed: bool = False,
    base_version: str | None = None,
    cells_of_model: str | None = None,
    started_version: str | None = None,
) -> dict[str, int]:
    """Replace the published rows that differ from the staged set (kx_pub), in one transaction
    (the SQL is kpis.engine.publication's; this is the run's side of it).

    `on_published(stats)` runs inside that transaction, so the run's bookkeeping commits with it.
    `diffed`: the chunks of a chunked run have filled the shared kx_del and kx_ins for their own
    scopes already. `base_version`: an incremental run that recomputed only some periods, on the
    state of the set published at that version; it publishes nothing if the set has been written
    since. `cells_of_model`: such a run patched only some cells (kx_pubcell) of the set computed
    with this model; only those cells' rows and the affected reconciliation items are replaced.
    The run's facts become the state of the new set (KpiPublication.state_run_id), in the same
    transaction. `started_version`: the set's version before the run read any of it; if the set
    has been written since (a row by hand after a chunk compared its scopes), the state is not tied
    to the new set (state_version NULL), so the next run compares every row instead of trusting it.
    """
    changed_periods = publication.stage_changes(
        diffed=diffed, on_base=base_version is not None, cells_of_model=cells_of_model
    )
    with transaction.atomic():
        _lock_runs()
        if diffed and KpiRun.objects.filter(pk=run.pk, status=KpiRun.Status.SUCCEEDED).exists():
            # A redelivered chunk that also came last: its sibling published the run already.
            return {"inserted": 0, "updated": 0, "deleted": 0, "changed_periods": 0}
        # A run ended meanwhile (its worker taken for dead and the run replaced, or released by
        # hand) never publishes: only one run's set is ever published.
        ensure_running(run.pk)
        if diffed:
            # In the transaction: the chunks' shared differences are whole again if it fails,
            # for the retry (and a sibling publishing at the same time waits, then returns).
            publication.pair_chunk_differences()
        # Locked: a write to the set from now on waits for this commit, then moves the version on.
        locked = KpiPublication.objects.select_for_update().filter(pk=1)
        current = locked.values_list("version", flat=True).first()
        tied = started_version is None or current == started_version
        if base_version is not None and current != base_version:
            raise PublishedSetChanged(
                "the published KPI set was written while this run computed from its state; "
                "the next run recomputes every period and compares every row"
            )
        stats = publication.write_changes(run.pk, cells_of_model=cells_of_model)
        stats["changed_periods"] = changed_periods
        if on_published is not None:
            on_published(stats)
        # After every write above, so the state is tied to the version they produced (a database
        # flushed of the row, as tests do, gets it back first).
        publication_version()
        if not tied:
            logger.warning("KPI run %s: the set was written meanwhile; its state is not tied to it", run.pk)
        KpiPublication.objects.filter(pk=1).update(
            state_run_id=run.pk, state_version=F("version") if tied else None
        )
    publication.clean_up(diffed=diffed, changed=stats["inserted"] + stats["updated"] + stats["deleted"])
    return stats


# -- on-request attribution --------------------------------------------------------------------
# The settings a KPI run's transactions take (kpis.engine: `_begin_local`, `run`): an engine path
# computed on request (attribution_by_partner) runs with the same, so it plans and sorts alike.
ENGINE_SESSION_SETTINGS = {
    "temp_buffers": "1GB",
    "work_mem": "256MB",
    "maintenance_work_mem": "256MB",
    "synchronous_commit": "off",
}


def attribution_by_partner(*, model: str, period_from: date, period_to: date) -> list[dict]:
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
    # A KPI run's session settings (its work_mem: with the default 4 MB one model for one month at
    # 1M deals ran past 240 s, with 256 MB 13.6 s), under the request's own statement timeout.
    # One transaction: if a statement fails or is cancelled, rolling it back drops the engine's
    # temporary tables too (a DROP in an aborted transaction would hide the error behind another).
    with transaction_settings(ENGINE_SESSION_SETTINGS):
        computation.drop()
        rows = computation.attribution_totals(period_from, period_to)
        computation.drop()
    return rows


# -- reconciliation ----------------------------------------------------------------------------
def reconciliation_report() -> list[dict]:
    """The suspicious facts listed by the last published run (see KPIS.md "Data quality")."""
    from kpis.selectors import reconciliation_items

    return reconciliation_items()


# -- costs and targets -------------------------------------------------------------------------
def _decimal(
    value: object, field: str, errors: dict, check: Callable[[Decimal], list[str]]
) -> Decimal | None:
    try:
        number = decimal_from_input(value)
    except ValueError as exc:
        errors[field] = [str(exc)]
        return None
    if messages := check(number):
        errors[field] = messages
    return number


def cost_entry_create(
    *,
    date: date,
    amount: Decimal | str,
    category: str,
    partner: Partner | None = None,
    join_source: JoinSource | None = None,
    note: str = "",
) -> CostEntry:
    errors: dict[str, list[str]] = {}
    value = _decimal(amount, "amount", errors, amount_errors)
    if category not in CostEntry.Category.values:
        errors["category"] = [f"must be one of {', '.join(CostEntry.Category.values)}"]
    if date is None:
        errors["date"] = ["is required"]
    elif messages := date_errors(date):
        errors["date"] = messages
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        return CostEntry.objects.create(
            date=date, amount=value, category=category, partner=partner, join_source=join_source, note=note
        )


def target_set(
    *,
    metric: str,
    period: str,
    value: Decimal | str,
    partner: Partner | None = None,
    join_source: JoinSource | None = None,
) -> Target:
    """Create or replace the target of a metric for a period (`2026-03`, `2026-Q1`, `2026`) and scope."""
    errors: dict[str, list[str]] = {}
    if metric not in TARGETABLE_METRICS:
        errors["metric"] = ["unknown metric"]
    try:
        parsed = parse_period(period)
    except ValueError as exc:
        errors["period"] = [str(exc)]
        parsed = None
    amount = _decimal(value, "value", errors, target_value_errors)
    if partner is not None and join_source is not None:
        errors["join_source"] = ["a target names a partner or a join source, not both"]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        target, _ = Target.objects.update_or_create(
            metric=metric,
            period=parsed.label,
            partner=partner,
            join_source=join_source,
            defaults={"grain": parsed.grain.value, "period_start": parsed.start, "value": amount},
        )
        return target
