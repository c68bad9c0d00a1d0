"""One computation's context: its settings, as-of date, dialect, result and the plumbing every stage uses."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.db import connection

from kpis.engine.dialect import Dialect, session_setting
from kpis.engine.tables import SCOPE_TABLES, TEMP_TABLES, run_schema
from program.attribution import AttributionModel
from program.models import ProgramSettings


@dataclass
class EngineSettings:
    time_zone: str
    attribution_model: str
    half_life_days: float
    activation_window_days: int
    activity_registrations: bool
    activity_sourced_deals: bool
    activity_touches: bool

    @classmethod
    def from_program(cls, program: ProgramSettings, *, model: str | None = None) -> EngineSettings:
        return cls(
            time_zone=program.time_zone,
            attribution_model=AttributionModel(model or program.attribution_model).value,
            half_life_days=float(program.time_decay_half_life_days),
            activation_window_days=program.activation_window_days,
            activity_registrations=program.activity_registrations,
            activity_sourced_deals=program.activity_sourced_deals,
            activity_touches=program.activity_touches,
        )


@dataclass
class ComputeResult:
    periods: int = 0
    staged_rows: int = 0
    first_month: int | None = None
    last_month: int | None = None
    # Incremental runs: whether only the periods touched by changes were recomputed, and how many.
    restricted: bool = False
    periods_recomputed: int = 0
    # Patched cells: the kept components of the previous run's cells were adjusted by the changed
    # rows, and only the cells they changed (kx_pubcell) are staged and compared.
    cells: bool = False
    # Delta facts: how many changed rows the previous run's facts were patched with; None when the
    # facts were built in full.
    changed_rows: int | None = None
    # A chunked full run: the state its chunks compare their cells with (None: they stage all).
    cell_base: int | None = None
    statements: list[str] = field(default_factory=list)

    @property
    def delta(self) -> bool:
        return self.changed_rows is not None


@dataclass(frozen=True)
class Chunk:
    """The part of the scopes one worker computes: the program scope and/or the partner and
    join-source scopes of some join sources (a join source and all its partners stay together, so
    a deal touched by two partners of one source is still counted once for the source)."""

    program: bool = True
    join_sources: tuple[int, ...] | None = None  # None: every join source

    @property
    def partners(self) -> bool:
        return self.join_sources is None or len(self.join_sources) > 0

    def join_source_filter(self, column: str) -> str:
        if self.join_sources is None:
            return "1 = 1"
        if not self.join_sources:
            return "1 = 0"
        return f"{column} IN ({', '.join(str(int(j)) for j in self.join_sources)})"


WHOLE = Chunk()


class RunContext:
    """What every stage of one computation reads and writes besides its SQL: the settings, the
    as-of date, the dialect, the chunk being computed, the result so far, and the plumbing
    (`exec`, `fetch`, `analyze`, `fill`...). The stages are functions of it (facts.build(ctx),
    components.build(ctx)...); `KpiComputation` (kpis.engine.run) strings them together."""

    def __init__(
        self,
        settings: EngineSettings,
        as_of: date,
        *,
        schema: str | None = None,
        previous: int | None = None,
        state_of: int | None = None,
        cell_base: int | None = None,
    ) -> None:
        """`previous`: the run whose state (its facts) describes the published set; the run then
        recomputes only the periods its changes touched. `state_of`: keep these facts as that run's
        state (on PostgreSQL they must be in its schema already). `cell_base`: a chunked full run's,
        the run whose state describes the published set; its chunks stage only the cells whose
        components differ from that state's (`cells.keep_changed_cells`), when the facts step finds
        the two comparable (`chunks.check_cell_base`)."""
        self.settings = settings
        self.as_of: date = as_of  # annotated: families.py reads it across an import cycle
        self.previous = previous
        self.cell_base = cell_base
        self.state_of = state_of
        self.sql = Dialect(settings.time_zone)
        self.result = ComputeResult()
        if schema is not None and (not self.sql.pg or not re.match(r"^[a-z_][a-z0-9_]*$", schema)):
            raise ValueError(f"shared fact tables need PostgreSQL and a plain schema name, not {schema!r}")
        # PostgreSQL: facts as UNLOGGED tables in this schema, so several sessions share them.
        self.schema = schema
        if state_of is not None and self.sql.pg and schema != run_schema(state_of):
            raise ValueError("on PostgreSQL a run's state is its schema's facts")
        self.chunk = WHOLE
        # Patched facts: the month bounds of the affected rows before and after patching.
        self.affected_bounds: dict[str, tuple[int | None, int | None]] = {}
        # What of the change log the facts include (state.read_change_mark), and the fact rows'
        # first and last month (periods.build): kept with the state.
        self.change_mark: tuple[str | None, int, int] = (None, 0, -1)
        self.fact_month_bounds: tuple[int | None, int | None] = (None, None)

    def fact_table(self, name: str) -> str:
        """`CREATE {fact_table(name)} AS ...`: a temp table, or in a run's schema an unlogged one."""
        return f"UNLOGGED TABLE {self.schema}.{name}" if self.schema else f"TEMP TABLE {name}"

    def exec(self, statement: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(statement)

    def fetch(self, statement: str) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            return rows

    def analyze(self, *tables: str) -> None:
        """Temp tables are never auto-analyzed on PostgreSQL; the planner needs their sizes. A table
        may name the columns to sample ("kx_s (scope, sid)"): a wide table's others cost time and
        no plan reads them."""
        if self.sql.pg:
            self.exec("ANALYZE " + ", ".join(tables))

    def fill(self, table: str, select: str, *, replace: str | None = None) -> None:
        """Full facts: CREATE `table` AS `select`. Delta facts (`replace`, a condition on the rows to
        replace): delete those rows and insert `select`'s (the same SELECT, restricted by the caller
        to the same rows' keys, so both modes give a table its columns in one order)."""
        if replace is None:
            self.exec(f"CREATE {self.fact_table(table)} AS {select}")
            return
        self.exec(f"DELETE FROM {table} WHERE {replace}")
        self.exec(f"INSERT INTO {table} {select}")

    def keys(self, name: str, *selects: str) -> None:
        """Temp table `name` of the distinct keys (column k) the `selects` yield."""
        self.exec(f"CREATE TEMP TABLE {name} AS SELECT DISTINCT k FROM ({' UNION '.join(selects)}) u")
        self.analyze(name)

    def drop(self) -> None:
        """Drop every table of a computation in this session (a session may compute several)."""
        self.exec("DROP VIEW IF EXISTS kx_touch")
        for table in TEMP_TABLES:
            self.exec(f"DROP TABLE IF EXISTS {table}")

    def drop_scope_tables(self) -> None:
        for table in SCOPE_TABLES:
            self.exec(
                f"DROP TABLE IF EXISTS pg_temp.{table}" if self.sql.pg else f"DROP TABLE IF EXISTS {table}"
            )

    def begin_local(self) -> None:
        # Only unlogged and temp tables are written: nothing to lose if a commit is not flushed.
        self.exec("SET LOCAL synchronous_commit = off")
        self.exec("SET LOCAL work_mem = '256MB'")

    def share_cores(self) -> None:
        """This transaction's statements run beside another session's (a chunked run's facts and
        chunks), which keep the cores busy: parallel workers on top oversubscribe them and add
        their own gathering (a full rerun at 1M deals: 17.8-18.6 s without, 19.2-19.5 s with)."""
        self.exec("SET LOCAL max_parallel_workers_per_gather = 0")
        self.exec("SET LOCAL max_parallel_maintenance_workers = 0")

    def search_path(self) -> contextlib.AbstractContextManager[None]:
        """The run's schema first: its shared fact tables resolve by their plain names."""
        return session_setting("search_path", f"{self.schema}, public")

    def facts_path(self) -> contextlib.AbstractContextManager[None]:
        return self.search_path() if self.schema else contextlib.nullcontext()
