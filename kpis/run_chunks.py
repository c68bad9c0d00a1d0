"""Chunked KPI runs (KPI_CHUNKS > 1, PostgreSQL): the shared facts once, then the program scope
and the join sources in chunks of similar weight on several sessions (threads of this process,
or one Celery task each); the last chunk to finish publishes the run (kpis.run_publication).

The SQL of the facts, the chunks and their plan is kpis.engine.chunks'; this is the run's side.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from kpis.engine import Chunk, ComputeResult, EngineSettings, KpiComputation, SessionThread, run_schema, state
from kpis.engine import chunks as chunks_plan
from kpis.models import KpiRun
from kpis.recovery import RunReleased, heartbeat, send_after_commit
from kpis.run_publication import (
    PublishedSetChanged,
    finisher,
    incremental_base,
    keep_only_state,
    publish,
    publish_whole,
    record_facts,
    run_as_of,
)
from kpis.selectors import publication_version
from program.models import ProgramSettings

logger = logging.getLogger(__name__)


def kpi_chunk_count() -> int:
    """How many chunks a run is split into (PostgreSQL only; 1 = computed whole in one session)."""
    return max(1, int(getattr(settings, "KPI_CHUNKS", 1))) if connection.vendor == "postgresql" else 1


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


def shared_computation(
    run: KpiRun,
    *,
    previous: int | None = None,
    engine_settings: EngineSettings | None = None,
    cell_base: int | None = None,
) -> KpiComputation:
    program = engine_settings or EngineSettings.from_program(ProgramSettings.load())
    return KpiComputation(
        program,
        run_as_of(run),
        schema=run_schema(run.pk),
        previous=previous,
        state_of=run.pk,
        cell_base=cell_base,
    )


def execute_chunked(
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
    cell_base = incremental_base(run) if run.mode == KpiRun.Mode.FULL else None
    computation = shared_computation(
        run, previous=previous, engine_settings=engine_settings, cell_base=cell_base[0] if cell_base else None
    )
    started = time.monotonic()
    result = computation.run_facts()
    if record_fingerprint is not None:
        record_fingerprint()
    record_facts(run, result)
    if result.cells:
        # The facts' session staged the few cells the changes touched: no chunks to share out.
        publish_whole(
            run, computation, base_version=base[1] if base else None, started_version=started_version
        )
        return
    chunks = plan_chunks(computation.chunk_weights(), kpi_chunk_count())
    logger.info(
        "KPI run %s: shared facts in %.1f s; %s chunks", run.pk, time.monotonic() - started, len(chunks)
    )
    plan = _chunk_plan(computation, result, chunks, base, cell_base, started_version)
    with transaction.atomic():
        chunks_plan.write_plan(run.pk, plan)
        if dispatch == "celery":
            for number in range(len(chunks)):
                send_after_commit(
                    "kpis.tasks.compute_kpi_chunk", {"run_id": run.pk, "number": number}, queue=queue
                )
    if dispatch != "celery":
        _run_chunks_in_threads(run, len(chunks))


def _chunk_plan(
    computation: KpiComputation,
    result: ComputeResult,
    chunks: list[Chunk],
    base: tuple[int, str] | None,
    cell_base: tuple[int, str] | None,
    started_version: str | None,
) -> list[dict[str, Any]]:
    """What each chunk's task reads to compute its scopes (kpis_chunk plan rows)."""
    # Every chunk computes with the settings the shared facts were built with (and the state
    # records), not with settings committed since: one run never mixes attribution models.
    settings_json = json.dumps(dataclasses.asdict(computation.settings))
    base_version = base[1] if base and result.restricted else None
    if result.cell_base is not None and cell_base is not None:
        # Unchanged cells keep their published rows: only while nothing else wrote the set.
        base_version = cell_base[1]
    return [
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


def _run_chunks_in_threads(run: KpiRun, count: int) -> None:
    """Compute the chunks side by side in this process, one database session each."""
    workers = [
        SessionThread(lambda n=n: kpi_chunk_execute(run_id=run.pk, number=n), name=f"kpi-chunk-{n}")
        for n in range(count)
    ]
    errors = [error for error in (worker.join() for worker in workers) if error is not None]
    if errors:
        # The chunk's own failure rather than a database error it may have caused a sibling.
        errors.sort(key=lambda exc: isinstance(exc, (OperationalError, InterfaceError)))
        raise errors[0]


def _chunk_computation(
    run: KpiRun, planned: dict[str, Any], *, compare_cells: bool = True
) -> tuple[KpiComputation, Chunk]:
    """The computation and the chunk of one row of the plan (`compare_cells=False`: staging every
    row, whatever cell base the plan names)."""
    sources = tuple(int(j) for j in planned["join_sources"].split(",") if j)
    # A plan written before chunks stored their settings (a run in flight across an upgrade)
    # falls back to the settings as they are now, as such runs always did.
    stored = planned.get("engine_settings")
    computation = shared_computation(
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
            finish = finisher(run, periods=periods)
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
        keep_only_state(run_id)
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
