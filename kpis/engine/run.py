"""One computation, stage by stage: `KpiComputation` strings the stages of the pipeline together.

A whole run in one session (`run`): facts (or the previous run's facts patched with the changes),
periods, then either the patched cells or the components, metrics and targets of the periods that
changed, the staged set kx_pub, the reconciliation items, and the facts kept as the run's state.
A chunked run (PostgreSQL) does the same split in two: `run_facts` once, `run_chunk` per chunk
(kpis.engine.chunks). Publishing the staged set is kpis.engine.publication's.
"""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Any

from django.db import connection, transaction

from kpis.engine import (
    attribution,
    cells,
    chunks,
    components,
    facts,
    lifecycle,
    metrics,
    periods,
    reconciliation,
    state,
)
from kpis.engine.context import Chunk, ComputeResult, EngineSettings, RunContext
from kpis.engine.incremental import changed_periods, delta_facts, patching
from kpis.engine.session import size_temp_buffers


def compute(ctx: RunContext) -> ComputeResult:
    """Every stage of a run in this session, on the snapshot the caller opened."""
    patched = delta_facts.patched_facts(ctx)
    if not patched:
        facts.build(ctx)
        lifecycle.build(ctx)
        attribution.build(ctx)
        facts.new_customers(ctx)
        ctx.analyze("kx_attr", "kx_newcust")
    periods.build(ctx)
    if patched and patching.cells_patchable(ctx):
        patching.patch_cells(ctx)
        state.keep_state(ctx)
        return ctx.result
    changed_periods.restrict_to_changed_periods(ctx)
    cells.prepare_cells(ctx)
    components.build(ctx)
    metrics.build(ctx)
    cells.store_cells(ctx, 0)
    metrics.publishable(ctx)
    reconciliation.build(ctx)
    state.keep_state(ctx)
    return ctx.result


class KpiComputation:
    """Builds the full KPI staging set (kx_pub) for one program state in the current connection.

    Usage: `comp = KpiComputation(settings, as_of); comp.run(); ...read kx_pub...; comp.drop()`.
    The arguments are RunContext's.
    """

    def __init__(self, settings: EngineSettings, as_of: date, **options: Any) -> None:
        self.ctx = RunContext(settings, as_of, **options)

    @property
    def settings(self) -> EngineSettings:
        return self.ctx.settings

    @property
    def result(self) -> ComputeResult:
        return self.ctx.result

    @property
    def schema(self) -> str | None:
        return self.ctx.schema

    @property
    def cell_base(self) -> int | None:
        """The state a chunked full run's chunks compare their cells with (None: they stage all)."""
        return self.ctx.cell_base

    def search_path(self) -> contextlib.AbstractContextManager[None]:
        return self.ctx.search_path()

    def drop(self) -> None:
        self.ctx.drop()

    def run(self) -> ComputeResult:
        """Build kx_pub. On PostgreSQL every statement reads one REPEATABLE READ snapshot, so a
        write committed mid-run never half-appears (e.g. a deal without its touches)."""
        ctx = self.ctx
        if ctx.sql.pg and not connection.in_atomic_block:
            # Temp tables live in backend-local buffers (8 MB by default): kpis.engine.session.
            size_temp_buffers()
        ctx.drop()
        if ctx.sql.pg and not connection.in_atomic_block:
            with transaction.atomic():
                ctx.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                ctx.begin_local()
                with ctx.sql.session_time_zone(), ctx.facts_path():
                    return compute(ctx)
        if ctx.sql.pg:
            # The caller's transaction may publish too: its commit stays synchronous.
            ctx.exec("SET LOCAL work_mem = '256MB'")
        with ctx.sql.session_time_zone(), ctx.facts_path():
            return compute(ctx)

    def run_facts(self) -> ComputeResult:
        """Chunked run, step 1 (kpis.engine.chunks.run_facts)."""
        return chunks.run_facts(self.ctx)

    def run_chunk(self, number: int, chunk: Chunk) -> int:
        """Chunked run, step 2: one chunk (kpis.engine.chunks.run_chunk); how many rows it staged."""
        return chunks.run_chunk(self.ctx, number, chunk)

    def chunk_weights(self) -> list[tuple[int, int]]:
        return chunks.chunk_weights(self.ctx)

    def attribution_totals(
        self, date_from: date, date_to: date, *, whole_program: bool = False
    ) -> list[dict[str, Any]]:
        """Per partner sourced / influenced / attributed revenue of deals won between two local
        dates, from facts of only those deals (kpis.engine.attribution.totals)."""
        with self.ctx.sql.session_time_zone():
            return attribution.totals(self.ctx, date_from, date_to, whole_program=whole_program)
