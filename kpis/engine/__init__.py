"""The KPI engine: every metric of KPIS.md computed in the database with set-based SQL.

One computation is a fixed sequence of statements over session temp tables (prefix `kx_`), so the
number of queries never grows with partners or deals. The SQL runs unchanged on PostgreSQL and
SQLite; the few dialect differences (local dates, day differences, integer floors) live in
`dialect`. Every value is an integer scaled by 10^4 (`v4`); the published Decimal is `v4 / 10^4`.

The modules follow the pipeline (docs/kpis.md, "Architecture"): dialect, context, facts, periods,
lifecycle, attribution, components, metrics (and targets), cells, reconciliation, publication,
incremental (delta facts, changed periods, patched cells), chunks, state; run strings them
together. The names below are what the rest of the project uses.
"""

from kpis.engine.context import Chunk, ComputeResult, EngineSettings, RunContext
from kpis.engine.metrics import ZERO_WHEN_EMPTY
from kpis.engine.publication import (
    PUBLISHED_COLUMNS,
    PUBLISHED_KEY,
    VANISHED_COLUMNS,
    VANISHED_KEY,
    grouped_diff,
    published_cells,
    published_periods,
    same_key,
    staged_rows,
)
from kpis.engine.reconciliation import reconciliation_items_replaced
from kpis.engine.run import KpiComputation
from kpis.engine.session import SessionThread
from kpis.engine.state import drop_state, index_state, prune_change_log, state_exists, state_runs
from kpis.engine.tables import run_schema, state_table

__all__ = [
    "PUBLISHED_COLUMNS",
    "PUBLISHED_KEY",
    "VANISHED_COLUMNS",
    "VANISHED_KEY",
    "ZERO_WHEN_EMPTY",
    "Chunk",
    "ComputeResult",
    "EngineSettings",
    "KpiComputation",
    "RunContext",
    "SessionThread",
    "drop_state",
    "grouped_diff",
    "index_state",
    "prune_change_log",
    "published_cells",
    "published_periods",
    "reconciliation_items_replaced",
    "run_schema",
    "same_key",
    "staged_rows",
    "state_exists",
    "state_runs",
    "state_table",
]
