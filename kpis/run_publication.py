"""A KPI run's publication and its bookkeeping: the staged set replaces the published rows that
differ, in one short transaction, with the run's record; then only the run's state is kept.

The SQL is kpis.engine.publication's; this is the run's side of it (kpis.run_execution and
kpis.run_chunks call it). Readers (PostgreSQL MVCC, SQLite WAL) keep seeing the previous complete
set until the publishing transaction commits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import date

from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from events.services import record_event
from events.types import EventType
from kpis.engine import (
    ComputeResult,
    KpiComputation,
    drop_state,
    index_state,
    prune_change_log,
    publication,
    state,
    state_exists,
    state_runs,
)
from kpis.explorer import explorer_after_publication
from kpis.forecast_store import forecast_after_publication
from kpis.models import KpiPublication, KpiRun
from kpis.recovery import ensure_running, lock_runs
from kpis.selectors import publication_version

logger = logging.getLogger(__name__)


class PublishedSetChanged(RuntimeError):
    """The published set was written while an incremental run computed on the state describing it."""


def drop_unused_namespaces(*, keep: int | None) -> None:
    """Drop the tables of every run but `keep` and the queued or running ones (a run claimed just
    after a publication committed may be creating its own)."""
    left = state_runs()
    active = KpiRun.objects.filter(pk__in=left, status__in=[KpiRun.Status.QUEUED, KpiRun.Status.RUNNING])
    for run_id in left - set(active.values_list("pk", flat=True)) - {keep}:
        drop_state(run_id)


def state_run_id() -> int | None:
    """The run whose facts (its state) describe the published set, if any."""
    return KpiPublication.objects.filter(pk=1).values_list("state_run_id", flat=True).first()


def incremental_base(run: KpiRun) -> tuple[int, str] | None:
    """(run id, publication version) of the state an incremental run can diff against: the facts
    of another run that published the set, when nothing has written the set since and the state
    is complete; None otherwise (the run then recomputes every period)."""
    row = KpiPublication.objects.filter(pk=1).values_list("state_run_id", "state_version", "version").first()
    if row is None or row[0] in (None, run.pk) or row[1] != row[2] or not state_exists(row[0]):
        return None
    return row[0], row[2]


def keep_only_state(run_id: int, computation: KpiComputation | None = None) -> None:
    """After a publication committed: drop every other finished run's tables, and of this run's
    the ones only computing and publishing needed (its facts stay as the state). Best effort: the
    run has succeeded, and what is left goes with the next run's clean-up."""
    try:
        if computation is not None:
            computation.drop()
        if connection.vendor == "postgresql":
            state.drop_work_tables(run_id)
        drop_unused_namespaces(keep=run_id)
        prune_change_log(run_id)
        if connection.vendor == "postgresql":
            index_state(run_id, cells_changed=computation is None or not computation.result.cells)
    except DatabaseError:
        logger.warning("KPI run %s: clean-up after publishing failed", run_id, exc_info=True)
        if not connection.in_atomic_block:
            connection.close()  # possibly broken: the next query reconnects


def run_as_of(run: KpiRun) -> date:
    """The date the run computes as of, which claiming it recorded (kpis.run_execution.claim)."""
    if run.as_of is None:
        raise RuntimeError(f"KPI run {run.pk} has no as-of date: it was never claimed")
    return run.as_of


def publish_whole(
    run: KpiRun, computation: KpiComputation, *, base_version: str | None, started_version: str | None
) -> None:
    """Publish what one session staged (kx_pub), then keep only the run's state."""
    result = computation.result
    with computation.search_path() if computation.schema else contextlib.nullcontext():
        publish(
            run=run,
            on_published=finisher(run, periods=result.periods_recomputed),
            base_version=base_version,
            cells_of_model=computation.settings.attribution_model if result.cells else None,
            started_version=started_version,
        )
    keep_only_state(run.pk, computation)


def record_facts(run: KpiRun, result: ComputeResult) -> None:
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


def finisher(run: KpiRun, *, periods: int) -> Callable[[dict[str, int]], None]:
    """The bookkeeping that commits with the publication (`periods`: how many it recomputed)."""

    def finish(stats: dict[str, int]) -> None:
        now = timezone.now()
        KpiRun.objects.filter(pk=run.pk).update(
            status=KpiRun.Status.SUCCEEDED,
            finished_at=now,
            # Claiming the run set started_at (kpis.run_execution.claim).
            duration_seconds=(now - (run.started_at or now)).total_seconds(),
            rows_written=stats["inserted"] + stats["updated"],
            rows_deleted=stats["deleted"],
            periods_recomputed=periods,
        )
        record_event(type=EventType.KPI_RUN_PUBLISHED, obj=KpiRun.objects.get(pk=run.pk))
        # Its own task once this commits: the publication is not held open by the forecast.
        forecast_after_publication(run)
        explorer_after_publication(run)

    return finish


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
        lock_runs()
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
