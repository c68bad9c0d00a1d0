"""The attribution explorer's table: per partner, the revenue won in a date range, sourced,
influenced, and attributed under every attribution model, sorted and paged in the database.

From the published facts (kpis.published_attribution) the table of a range is computed once per
published run and stored (kpis.models.ExplorerPeriod, ExplorerRow: a run's facts never change);
every later read sorts, pages and totals the stored rows in SQL, so a page costs a few indexed
queries whatever the number of partners. Before any run has published facts the rows are computed
on request from the deal tables (kpis.services.attribution_by_partner, a small program's case),
and sorted and totalled in Python.

The stored figures and the computed ones agree to the cent (tests/test_kpi_drilldown.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, overload

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Sum

from kpis.metrics import Grain
from kpis.models import ExplorerPeriod, ExplorerRow, KpiRun
from kpis.recovery import send_after_commit
from program.attribution import AttributionModel
from program.models import ProgramSettings

MODELS: tuple[str, ...] = tuple(m.value for m in AttributionModel)
# Sort keys: the partner's name, then each money column.
SORTS: tuple[str, ...] = ("partner", "sourced", "influenced", *MODELS)
_CENT = Decimal("0.01")
OPENING_RANGE_TASK = "kpis.tasks.store_explorer_opening_range"


def cents(value: Any) -> Decimal:
    return (Decimal(int(value or 0)) / 100).quantize(_CENT)


@dataclass
class Row:
    partner_id: int
    partner_key: str
    partner_name: str
    sourced: Decimal
    influenced: Decimal
    models: dict[str, Decimal] = field(default_factory=dict)

    @property
    def cells(self) -> list[Decimal | None]:
        return [self.models.get(m) for m in MODELS]

    def attributed_under(self, model: str) -> dict[str, Any]:
        """The row as `/api/v1/kpi-attribution/` serves it: attributed under `model`."""
        return {
            "partner_id": self.partner_id,
            "partner_key": self.partner_key,
            "partner_name": self.partner_name,
            "sourced": self.sourced,
            "influenced": self.influenced,
            "attributed": self.models[model],
        }


@dataclass(frozen=True)
class Totals:
    """Sums over every row of the range (not a page): `count` rows; `sourced` and each model's
    total; `influenced` the program's influenced revenue, each deal once (a model's total less
    the sourced revenue: every model splits each deal exactly), where the rows' influenced cells
    count a deal once per partner that touched it."""

    count: int
    sourced: Decimal
    influenced: Decimal
    models: dict[str, Decimal]

    @property
    def cells(self) -> list[Decimal | None]:
        return [self.models.get(m) for m in MODELS]


def settings_key() -> str:
    """The program settings the stored figures depend on besides the run's facts: the model whose
    shares the run published, the time zone of the dates, time decay's half-life."""
    program = ProgramSettings.load()
    return f"{program.attribution_model}|{program.time_zone}|{float(program.time_decay_half_life_days)!r}"


class Ordered:
    """The rows in one order, as a sequence Django's Paginator (and DRF's) can page: `count()`
    and slices, each slice one query (stored rows) or a slice of a list (computed rows)."""

    def __init__(self, table: ExplorerTable, sort: str, descending: bool) -> None:
        self.table, self.sort, self.descending = table, sort, descending

    def count(self) -> int:
        return self.table.totals.count

    def __len__(self) -> int:
        return self.count()

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...
    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if isinstance(index, int):
            return self.table.slice(self.sort, self.descending, index, index + 1)[0]
        start, stop = index.start or 0, index.stop if index.stop is not None else self.count()
        return self.table.slice(self.sort, self.descending, start, stop)

    def __iter__(self) -> Iterator[Row]:
        """Every row, a thousand per query (the CSV download)."""
        start = 0
        while rows := self.table.slice(self.sort, self.descending, start, start + 1000):
            yield from rows
            start += len(rows)


class ExplorerTable:
    """The rows of one date range; `ordered(sort, descending)` pages them, `totals` sums them."""

    def __init__(
        self, period: ExplorerPeriod | None, computed: list[Row] | None, models: Sequence[str]
    ) -> None:
        self.period, self.computed, self.models = period, computed, list(models)
        self._totals: Totals | None = None

    def ordered(self, sort: str, descending: bool) -> Ordered:
        """`sort` one of SORTS, or "id" (the partner's id: the API's order)."""
        return Ordered(self, sort if sort in (*SORTS, "id") else default_sort(), descending)

    def partner_rows(self, partner_id: int) -> list[Row]:
        """The one partner's row, if it has one (a partner user's view of the table)."""
        if self.period is None:
            return [r for r in self.computed or [] if r.partner_id == partner_id]
        return self._rows(
            ExplorerRow.objects.select_related("partner").filter(period=self.period, partner_id=partner_id)
        )

    @property
    def totals(self) -> Totals:
        if self._totals is None:
            self._totals = self._stored_totals() if self.period is not None else self._computed_totals()
        return self._totals

    def _stored_totals(self) -> Totals:
        sums = ExplorerRow.objects.filter(period=self.period).aggregate(
            n=Count("pk"), sourced=Sum("sourced"), **{m: Sum(m) for m in MODELS}
        )
        return _totals(int(sums["n"]), cents(sums["sourced"]), {m: cents(sums[m]) for m in MODELS})

    def _computed_totals(self) -> Totals:
        rows = self.computed or []
        # Before any publication only (a small program): the rows are in memory already.
        return _totals(
            len(rows),
            sum((r.sourced for r in rows), Decimal(0)),
            {m: sum((r.models[m] for r in rows), Decimal(0)) for m in self.models},
        )

    def slice(self, sort: str, descending: bool, start: int, stop: int) -> list[Row]:
        if stop <= start:
            return []
        if self.period is None:
            return _sorted(self.computed or [], sort, descending)[start:stop]
        key = {"partner": "partner__name", "id": "partner_id"}.get(sort, sort)
        order = [F(key).desc() if descending else F(key).asc()]
        if sort in ("sourced", "influenced", *MODELS):
            order.append(F("partner__name").asc())
        rows = ExplorerRow.objects.select_related("partner").filter(period=self.period)
        return self._rows(rows.order_by(*order, "partner_id")[start:stop])

    @staticmethod
    def _rows(rows: Any) -> list[Row]:
        return [
            Row(
                r.partner_id,
                r.partner.key or str(r.partner_id),
                r.partner.name,
                cents(r.sourced),
                cents(r.influenced),
                {m: cents(getattr(r, m)) for m in MODELS},
            )
            for r in rows
        ]


def _totals(count: int, sourced: Decimal, models: dict[str, Decimal]) -> Totals:
    first = next(iter(models.values()), Decimal(0))
    return Totals(count, sourced, (first - sourced) if count else Decimal(0), models)


def _sorted(rows: list[Row], sort: str, descending: bool) -> list[Row]:
    by_id = sorted(rows, key=lambda r: r.partner_id, reverse=descending and sort == "id")
    if sort == "id":
        return by_id
    by_name = sorted(by_id, key=lambda r: r.partner_name, reverse=descending and sort == "partner")
    if sort == "partner":
        return by_name
    value = (lambda r: r.sourced) if sort == "sourced" else (lambda r: r.influenced)
    if sort in MODELS:
        value = lambda r: r.models.get(sort, Decimal(0))  # noqa: E731
    return sorted(by_name, key=value, reverse=descending)


def default_sort() -> str:
    """The program's own model: the column every published figure uses."""
    return ProgramSettings.load().attribution_model


def explorer_table(*, period_from: date, period_to: date, models: Sequence[str] = MODELS) -> ExplorerTable:
    """The table of the range: stored from the published facts (computed and stored on the first
    read of the range for the published run), or before any publication computed from the deal
    tables for `models` only (every model is stored, the others cost one engine run each)."""
    from kpis.drilldown import NoPublishedFacts, published_facts

    try:
        facts = published_facts()
    except NoPublishedFacts:
        return _computed(period_from, period_to, [AttributionModel(m).value for m in models])
    return ExplorerTable(_stored_range(facts, period_from, period_to), None, MODELS)


def store_opening_range() -> ExplorerPeriod | None:
    """Store the rows of the range the explorer opens on (its page without parameters: the newest
    complete published month, kpis.readers.choose_period) for the published run, so the first
    reader after a publication does not wait for them (1.8-3.5 s at 1M deals). None before any
    publication: nothing is stored then (the page computes from the deal tables)."""
    from kpis.drilldown import NoPublishedFacts, published_facts
    from kpis.readers import choose_period

    try:
        facts = published_facts()
    except NoPublishedFacts:
        return None
    model = ProgramSettings.load().attribution_model
    period, _ = choose_period(Grain.MONTH.value, None, attribution_model=model)
    return _stored_range(facts, period.start, period.end)


def _stored_range(facts: Any, period_from: date, period_to: date) -> ExplorerPeriod:
    """The range's rows for the published run: those stored, else computed and stored now."""
    key = settings_key()
    found = ExplorerPeriod.objects.filter(
        run_id=facts.run_id, period_from=period_from, period_to=period_to, settings_key=key
    ).first()
    return found or _store(facts, period_from, period_to, key)


def explorer_after_publication(run: KpiRun) -> None:
    """Inside a run's publishing transaction: send the task storing the explorer's opening range
    once the publication commits, on the run's queue."""
    send_after_commit(OPENING_RANGE_TASK, {"run_id": run.pk}, queue=run.queue or None, robust=True)


def _store(facts: Any, period_from: date, period_to: date, key: str) -> ExplorerPeriod:
    from kpis.published_attribution import store_explorer_rows

    try:
        with transaction.atomic():
            # The unique row first: a concurrent reader of the same range waits on it (PostgreSQL)
            # and then reads what this one stored.
            period = ExplorerPeriod.objects.create(
                run_id=facts.run_id, period_from=period_from, period_to=period_to, settings_key=key
            )
            store_explorer_rows(
                period.pk,
                facts=facts,
                period_from=period_from,
                period_to=period_to,
                table=ExplorerRow._meta.db_table,
                columns=MODELS,
            )
            # Only the published run's ranges are read again: the older runs' go.
            # (Two statements whatever there is to delete: no cascade collected in Python.)
            rows, periods = ExplorerRow._meta.db_table, ExplorerPeriod._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {rows} WHERE period_id IN (SELECT id FROM {periods} WHERE run_id <> %s)",
                    [facts.run_id],
                )
                cursor.execute(f"DELETE FROM {periods} WHERE run_id <> %s", [facts.run_id])
    except IntegrityError:
        return ExplorerPeriod.objects.get(
            run_id=facts.run_id, period_from=period_from, period_to=period_to, settings_key=key
        )
    return period


def _computed(period_from: date, period_to: date, models: list[str]) -> ExplorerTable:
    from kpis.services import attribution_by_partner as computed

    rows: dict[int, Row] = {}
    for model in models:
        for r in computed(model=model, period_from=period_from, period_to=period_to):
            row = rows.setdefault(
                r["partner_id"],
                Row(r["partner_id"], r["partner_key"], r["partner_name"], r["sourced"], r["influenced"]),
            )
            row.models[model] = r["attributed"]
    for row in rows.values():
        for model in models:
            row.models.setdefault(model, Decimal("0.00"))
    return ExplorerTable(None, list(rows.values()), models)
