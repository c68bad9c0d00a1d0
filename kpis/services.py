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
import os
import threading
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, F, Max
from django.utils import timezone

from deals.models import Deal, DealRegistration, Touch
from kpis.engine import (
    PUBLISHED_COLUMNS,
    PUBLISHED_KEY,
    VANISHED_COLUMNS,
    VANISHED_KEY,
    Chunk,
    EngineSettings,
    KpiComputation,
    SessionThread,
    drop_state,
    grouped_diff,
    index_state,
    prune_change_log,
    published_cells,
    published_periods,
    reconciliation_items_replaced,
    run_schema,
    same_key,
    state_exists,
    state_runs,
)
from kpis.metrics import TARGETABLE_METRICS, AttributionModel
from kpis.models import (
    CostEntry,
    FactChange,
    KpiPublication,
    KpiRun,
    KpiValue,
    ReconciliationItem,
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
)
from kpis.recovery import lock_runs as _lock_runs
from kpis.selectors import publication_version
from partners.models import JoinSource, Partner
from program.models import ProgramSettings
from program.validation import amount_errors, date_errors, decimal_from_input, target_value_errors

logger = logging.getLogger(__name__)


class PublishedSetChanged(RuntimeError):
    """The published set was written while an incremental run computed on the state describing it."""


def kpi_chunk_count() -> int:
    """How many chunks a run is split into (PostgreSQL only; 1 = computed whole in one session)."""
    return max(1, int(getattr(settings, "KPI_CHUNKS", 1))) if connection.vendor == "postgresql" else 1


# -- runs --------------------------------------------------------------------------------------
def program_today() -> date:
    """Today's date in the program time zone (the default as-of date)."""
    return timezone.now().astimezone(ZoneInfo(ProgramSettings.load().time_zone)).date()


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
            with connection.cursor() as cursor:
                for table in ("kx_del", "kx_ins", "kx_chunks", "kx_tw", "kx_recon"):
                    cursor.execute(f"DROP TABLE IF EXISTS {run_schema(run_id)}.{table}")
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
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {run_schema(run.pk)} CASCADE")
            cursor.execute(f"CREATE SCHEMA {run_schema(run.pk)}")
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
    schema = run_schema(run.pk)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        cursor.execute(f"CREATE SCHEMA {schema}")
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
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {schema}.kx_chunks (n INTEGER PRIMARY KEY, program BOOLEAN NOT NULL, "
            "join_sources TEXT NOT NULL, done BOOLEAN NOT NULL DEFAULT FALSE, periods INTEGER NOT NULL, "
            "base_version TEXT, engine_settings TEXT NOT NULL, cell_base INTEGER, started_version TEXT)"
        )
        # Every chunk computes with the settings the shared facts were built with (and the state
        # records), not with settings committed since: one run never mixes attribution models.
        settings_json = json.dumps(dataclasses.asdict(computation.settings))
        base_version = base[1] if base and result.restricted else None
        if result.cell_base is not None:
            # Unchanged cells keep their published rows: only while nothing else wrote the set.
            base_version = cell_base[1]
        for number, chunk in enumerate(chunks):
            cursor.execute(
                f"INSERT INTO {schema}.kx_chunks "
                "(n, program, join_sources, periods, base_version, engine_settings, cell_base, "
                "started_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    number,
                    chunk.program,
                    ",".join(map(str, chunk.join_sources or ())),
                    result.periods_recomputed,
                    base_version,
                    settings_json,
                    result.cell_base,
                    started_version,
                ],
            )
        if dispatch == "celery":
            from kpis.tasks import compute_kpi_chunk

            for number in range(len(chunks)):
                transaction.on_commit(
                    lambda n=number: compute_kpi_chunk.apply_async(
                        kwargs={"run_id": run.pk, "number": n}, queue=queue
                    )
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


def _planned_chunks(schema: str, number: int | None = None) -> list[dict]:
    """The rows of the run's chunk plan (kx_chunks), or the one of chunk `number`."""
    with connection.cursor() as cursor:
        where = "" if number is None else f" WHERE n = {int(number)}"
        cursor.execute(f"SELECT * FROM {schema}.kx_chunks{where} ORDER BY n")
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


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
    schema = run_schema(run_id)
    try:
        (planned,) = _planned_chunks(schema, number)
        computation, chunk = _chunk_computation(run, planned)
        started = time.monotonic()
        rows = computation.run_chunk(number, chunk)
        logger.info(
            "KPI run %s: chunk %s, %s rows in %.1f s", run_id, number, rows, time.monotonic() - started
        )
        with transaction.atomic(), connection.cursor() as cursor:
            # Locking every chunk row serialises the "am I the last one?" check.
            cursor.execute(f"SELECT n FROM {schema}.kx_chunks ORDER BY n FOR UPDATE")
            cursor.execute(f"UPDATE {schema}.kx_chunks SET done = TRUE WHERE n = %s", [number])
            cursor.execute(
                f"SELECT SUM(CASE WHEN done THEN 0 ELSE 1 END), MAX(periods), MAX(base_version) "
                f"FROM {schema}.kx_chunks"
            )
            remaining, periods, base_version = cursor.fetchone()
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
                with connection.cursor() as cursor:
                    cursor.execute(f"UPDATE {schema}.kx_chunks SET cell_base = NULL")
                restaged_from = publication_version()
                for every in _planned_chunks(schema):
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


def _publish_checkpoint() -> None:
    """Fault-injection point inside the publishing transaction (tests kill or fail the run here).

    PRM_KPI_PAUSE_IN_PUBLISH=<seconds> makes a run wait after deleting the old rows and before
    inserting the new ones; it is never set in production.
    """
    pause = os.environ.get("PRM_KPI_PAUSE_IN_PUBLISH")
    if pause:
        print("KPI run paused in publish", flush=True)  # noqa: T201 - the test waits for this line
        time.sleep(float(pause))


# A publication that changes at least this many rows, and this share of the table's rows as the
# planner last counted them, refreshes PostgreSQL's planner statistics.
ANALYZE_AFTER_CHANGED_ROWS = 10_000
ANALYZE_AFTER_CHANGED_SHARE = 0.1


def _stage_diff(cursor, *, restricted: bool, cells_of_model: str | None = None) -> None:
    """Temp kx_del, kx_ins and kx_upd of an unchunked run: the staged set against KpiValue
    (`restricted`: an incremental run's, against the published rows of the periods it recomputed;
    `cells_of_model`: a patched-cells run's, against the published rows of its cells).

    One grouping of both sides by key tells each published row with no staged row (kx_del), each
    staged row with no published one (kx_ins), and each key whose value, partner or join source
    differs (kx_upd, updated in place: see `_pair_updates`).
    """
    for table in ("kx_del", "kx_ins", "kx_upd", "kx_diff"):
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
    pg = connection.vendor == "postgresql"
    if pg:
        # One in-memory hash aggregate.
        cursor.execute("SET work_mem = '256MB'")
    published = KpiValue._meta.db_table
    if cells_of_model is not None:
        cursor.execute("DROP TABLE IF EXISTS kx_pubslice")
        cursor.execute(f"CREATE TEMP TABLE kx_pubslice AS SELECT * FROM {published_cells(cells_of_model)} k")
        published = "kx_pubslice"
    elif restricted:
        published = f"(SELECT * FROM {published} k0 WHERE {published_periods('k0')})"

    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {published} k)")
    if cursor.fetchone()[0]:
        diff = grouped_diff(staged="kx_pub", published=published)
    else:
        # A first publication: every staged row, in its order (grouped rows come in hash order,
        # and inserting them so costs KpiValue's indexes far more).
        diff = (
            f"SELECT {', '.join(PUBLISHED_KEY)}, CAST(NULL AS BIGINT) AS id, 1 AS staged, 0 AS published, "
            "value, partner_id, join_source_id, period_start FROM kx_pub"
        )
    cursor.execute(f"CREATE TEMP TABLE kx_diff AS {diff}")
    cursor.execute(f"CREATE TEMP TABLE kx_del AS SELECT {VANISHED_COLUMNS} FROM kx_diff WHERE staged = 0")
    cursor.execute(f"CREATE TEMP TABLE kx_ins AS SELECT {PUBLISHED_COLUMNS} FROM kx_diff WHERE published = 0")
    cursor.execute(
        f"CREATE TEMP TABLE kx_upd AS SELECT {VANISHED_COLUMNS}, value, partner_id, join_source_id, "
        "period_start FROM kx_diff WHERE staged = 1 AND published = 1"
    )
    cursor.execute("DROP TABLE kx_diff")
    if pg:
        cursor.execute("RESET work_mem")


def _pair_updates(cursor) -> None:
    """A chunked run's differences, in its publishing transaction: turn each published row to
    remove (kx_del) whose key is staged anew (kx_ins) into an update of that row in place (kx_upd),
    and leave only the rows to add in kx_ins and the rows to remove in kx_del.

    Both differences hold every key that changed value, partner or join source (a staged row with
    a published key would otherwise break KpiValue's unique key). An update that leaves the indexed
    columns alone writes no index entry when its page has room (KpiValue's fillfactor: a "HOT"
    update on PostgreSQL), where a delete and an insert write one per index.
    """
    cursor.execute("DROP TABLE IF EXISTS kx_upd")
    cursor.execute("SELECT EXISTS (SELECT 1 FROM kx_del) AND EXISTS (SELECT 1 FROM kx_ins)")
    (both,) = cursor.fetchone()
    if both and connection.vendor == "postgresql":
        # Sized for the planner: a hash join (a merge join sorts the text keys by collation).
        cursor.execute("ANALYZE kx_del, kx_ins")
    cursor.execute(
        f"""CREATE TEMP TABLE kx_upd AS
        SELECT {", ".join(f"d.{column}" for column in VANISHED_KEY)},
               i.value, i.partner_id, i.join_source_id, i.period_start
        FROM kx_del d JOIN kx_ins i ON {same_key("d", "i")} WHERE {"1 = 1" if both else "1 = 0"}"""
    )
    if both:
        cursor.execute(
            f"DELETE FROM kx_ins WHERE EXISTS (SELECT 1 FROM kx_upd u WHERE {same_key('u', 'kx_ins')})"
        )
        cursor.execute("DELETE FROM kx_del WHERE id IN (SELECT id FROM kx_upd)")


def _planner_rows(cursor, table: str) -> float:
    """How many rows the planner last counted in `table` (-1: never analysed)."""
    cursor.execute("SELECT reltuples FROM pg_class WHERE oid = CAST(%s AS regclass)", [table])
    return cursor.fetchone()[0]


def publish(
    *,
    run: KpiRun,
    on_published=None,
    diffed: bool = False,
    base_version: str | None = None,
    cells_of_model: str | None = None,
    started_version: str | None = None,
) -> dict[str, int]:
    """Replace the published rows that differ from the staged set (kx_pub), in one transaction.

    `on_published(stats)` runs inside that transaction, so the run's bookkeeping commits with it.
    `diffed`: the chunks of a chunked run have filled the shared kx_del and kx_ins for their own
    scopes already; only published rows outside every chunk (a deleted partner's) are added here.
    `base_version`: an incremental run that recomputed only some periods, on the state of the set
    published at that version; it publishes nothing if the set has been written since.
    `cells_of_model`: such a run patched only some cells (kx_pubcell) of the set computed with this
    model; only those cells' rows and the affected reconciliation items are replaced.
    The run's facts become the state of the new set (KpiPublication.state_run_id), in the same
    transaction. `started_version`: the set's version before the run read any of it; if the set
    has been written since (a row by hand after a chunk compared its scopes), the state is not tied
    to the new set (state_version NULL), so the next run compares every row instead of trusting it.
    """
    value_table = KpiValue._meta.db_table
    pg = connection.vendor == "postgresql"
    columns = PUBLISHED_COLUMNS
    with connection.cursor() as cursor:
        # The diff is computed before the transaction so the publishing lock is held briefly.
        if diffed:
            # Chunk -1: these rows, replaced when a publication is tried again.
            cursor.execute("DELETE FROM kx_del WHERE chunk = -1")
        if diffed and base_version is None:
            # (On a base, nothing has written the set since it held no such row: a partner or join
            # source deleted since would have taken its rows along, a write the base check sees.
            # The scan of every published row costs 0.3 s at 1M deals.)
            cursor.execute(
                f"""INSERT INTO kx_del ({VANISHED_COLUMNS}, chunk)
                SELECT {", ".join(f"k.{column}" for column in VANISHED_KEY)}, -1
                FROM {value_table} k
                WHERE NOT (k.scope = 'program'
                           OR (k.scope = 'join_source' AND k.join_source_id IN (SELECT id FROM kx_js))
                           OR (k.scope = 'partner' AND k.partner_id IN (SELECT id FROM kx_partner)))"""
            )
        if not diffed:
            _stage_diff(cursor, restricted=base_version is not None, cells_of_model=cells_of_model)
        updated_periods = "" if diffed else " UNION SELECT grain, period FROM kx_upd"
        cursor.execute(
            "SELECT COUNT(*) FROM (SELECT grain, period FROM kx_del "
            f"UNION SELECT grain, period FROM kx_ins{updated_periods}) p"
        )
        (changed_periods,) = cursor.fetchone()
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
                _pair_updates(cursor)
            # A statement that writes no row still counts as a write of the published set (its
            # triggers give it a new version, so caches would start over after every no-op run).
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM kx_del), EXISTS (SELECT 1 FROM kx_ins), "
                "EXISTS (SELECT 1 FROM kx_upd)"
            )
            to_delete, to_insert, to_update = cursor.fetchone()
            # Locked: a write to the set from now on waits for this commit, then moves the version on.
            locked = KpiPublication.objects.select_for_update().filter(pk=1)
            current = locked.values_list("version", flat=True).first()
            tied = started_version is None or current == started_version
            if base_version is not None and current != base_version:
                raise PublishedSetChanged(
                    "the published KPI set was written while this run computed from its state; "
                    "the next run recomputes every period and compares every row"
                )
            if pg:
                # Durability of this commit may lag a few ms; a crash then reruns the nightly job.
                cursor.execute("SET LOCAL synchronous_commit = off")
            deleted = inserted = updated = 0
            if to_delete:
                cursor.execute(f"DELETE FROM {value_table} WHERE id IN (SELECT id FROM kx_del)")
                deleted = cursor.rowcount
            _publish_checkpoint()
            if to_update:
                if pg:
                    cursor.execute(
                        f"""UPDATE {value_table} SET value = u.value, partner_id = u.partner_id,
                            join_source_id = u.join_source_id, period_start = u.period_start,
                            run_id = {int(run.pk)}
                        FROM kx_upd u WHERE {value_table}.id = u.id"""
                    )
                else:
                    # Row values, not UPDATE ... FROM (SQLite 3.33): Django 5.2 runs on 3.31.
                    cursor.execute("CREATE INDEX IF NOT EXISTS kx_upd_id ON kx_upd (id)")
                    cursor.execute(
                        f"""UPDATE {value_table}
                        SET (value, partner_id, join_source_id, period_start, run_id) = (
                            SELECT u.value, u.partner_id, u.join_source_id, u.period_start, {int(run.pk)}
                            FROM kx_upd u WHERE u.id = {value_table}.id)
                        WHERE id IN (SELECT id FROM kx_upd)"""
                    )
                updated = cursor.rowcount
            if to_insert:
                cursor.execute(
                    f"INSERT INTO {value_table} ({columns}, run_id) "
                    f"SELECT {columns}, {int(run.pk)} FROM kx_ins"
                )
                inserted = cursor.rowcount
            recon = ReconciliationItem._meta.db_table
            if cells_of_model is not None:
                cursor.execute(f"DELETE FROM {recon} WHERE {reconciliation_items_replaced(recon)}")
            else:
                cursor.execute(f"DELETE FROM {recon}")
            cursor.execute(
                f"""INSERT INTO {recon} (kind, description, deal_id, partner_id, touch_id, account_id,
                                         registration_ids, run_id)
                SELECT kind, detail, deal_id, partner_id, touch_id, account_id, registration_ids,
                       {int(run.pk)}
                FROM kx_recon"""
            )
            stats = {
                "inserted": max(inserted, 0),
                "updated": max(updated, 0),
                "deleted": max(deleted, 0),
                "changed_periods": changed_periods,
            }
            if on_published is not None:
                on_published(stats)
            # After every write above, so the state is tied to the version they produced (a database
            # flushed of the row, as tests do, gets it back first).
            publication_version()
            if not tied:
                logger.warning(
                    "KPI run %s: the set was written meanwhile; its state is not tied to it", run.pk
                )
            KpiPublication.objects.filter(pk=1).update(
                state_run_id=run.pk, state_version=F("version") if tied else None
            )
        if not diffed:
            for table in ("kx_del", "kx_ins"):
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute("DROP TABLE IF EXISTS kx_upd")
        changed = stats["inserted"] + stats["updated"] + stats["deleted"]
        if (
            pg
            and changed >= ANALYZE_AFTER_CHANGED_ROWS
            and changed >= ANALYZE_AFTER_CHANGED_SHARE * _planner_rows(cursor, value_table)
        ):
            # Autovacuum analyses late; until then the planner may scan the whole KPI table for the
            # API's and dashboards' reads (seen: 4.8 s instead of 0.1 ms after a first publication).
            cursor.execute(f"ANALYZE {value_table}")
    return stats


# -- on-request attribution --------------------------------------------------------------------
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
    computation.drop()
    try:
        return computation.attribution_totals(period_from, period_to)
    finally:
        computation.drop()


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
