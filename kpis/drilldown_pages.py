"""What a drill-down page and download show (kpis.drilldown): one page of rows with every part's
totals, the published value beside what the rows add up to, the links, the streamed CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import OperationalError, ProgrammingError, connection
from django.http import QueryDict

from kpis.drilldown import (
    FAMILY_COLUMNS,
    PARTS,
    Facts,
    Part,
    Query,
    all_totals,
    iter_rows,
    page,
    published_facts,
    recompute,
)
from kpis.metrics import Grain, Scope
from kpis.ranges import MonthRange, Selection, range_value, span_param, window_sums

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Paging:
    """A page of a drill-down in the shape includes/pagination.html reads."""

    number: int
    num_pages: int
    count: int

    @property
    def paginator(self) -> Paging:
        return self

    def has_other_pages(self) -> bool:
        return self.num_pages > 1

    def has_previous(self) -> bool:
        return self.number > 1

    def has_next(self) -> bool:
        return self.number < self.num_pages

    def previous_page_number(self) -> int:
        return self.number - 1

    def next_page_number(self) -> int:
        return self.number + 1

    @property
    def start_index(self) -> int:
        return 0 if not self.count else (self.number - 1) * PAGE_SIZE + 1


PAGE_SIZE = 50


def published_value(q: Query, model: str) -> Decimal | None:
    """The published value `q` drills into (under `model`), None when absent. For a custom range:
    the value its card shows, from the published values of its months (kpis.ranges)."""
    from kpis.models import KpiValue

    if isinstance(q.period, MonthRange):
        return range_card_value(q, q.period, model)
    qs = KpiValue.objects.filter(
        attribution_model=model,
        scope=q.scope,
        grain=q.period.grain,
        period=q.period.label,
        metric=q.metric,
        target_metric="",
    )
    if q.scope == Scope.PARTNER:
        qs = qs.filter(partner_id=q.sid)
    elif q.scope == Scope.JOIN_SOURCE:
        qs = qs.filter(join_source_id=q.sid)
    return qs.values_list("value", flat=True).first()


def range_card_value(q: Query, span: MonthRange, model: str) -> Decimal | None:
    """The metric over the range's months, summed and derived as a range card sums and derives it
    (kpis.ranges.window_sums, range_value); the selection is the one the cards read."""
    from partners.models import JoinSource, Partner

    selection = Selection(attribution_model=model)
    if q.scope != Scope.PROGRAM:
        owner = Partner if q.scope == Scope.PARTNER else JoinSource
        found = owner.objects.filter(pk=q.sid).first()
        if found is None:
            return None
        selection = Selection(scope=q.scope, scope_key=found.export_key, attribution_model=model)
    (sums,) = window_sums(selection, Grain.MONTH.value, [span.labels], [q.metric])
    return range_value(q.metric, sums)


def page_context(facts: Facts, q: Query, *, sort: str = "", page_number: object = 1) -> dict[str, Any]:
    """Everything a drill-down page shows: the part's columns and one page of its rows, every part's
    totals, what they add up to and the published value. A fixed number of queries.

    A run that publishes meanwhile drops the state this request began reading (its clean-up): the
    page is then read once more from the new state (outside a transaction, where a failed
    statement leaves the connection usable)."""
    try:
        return _page_context(facts, q, sort=sort, page_number=page_number)
    except (ProgrammingError, OperationalError):  # no such table (PostgreSQL, SQLite)
        if connection.in_atomic_block:
            raise
        fresh = published_facts()
        if fresh.run_id == facts.run_id:
            raise
        return _page_context(fresh, q, sort=sort, page_number=page_number)


def _page_context(facts: Facts, q: Query, *, sort: str, page_number: object) -> dict[str, Any]:
    sql = facts.sql()
    part = q.the_part()
    parts = all_totals(facts, q, sql)
    count = parts[part.key].rows
    num_pages = max(1, -(-count // PAGE_SIZE))
    try:
        number = min(max(1, int(str(page_number))), num_pages)
    except ValueError:
        number = 1
    drill = page(
        facts, q, sort=sort, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE, sql=sql, known=parts[part.key]
    )
    return {
        "drill": drill,
        "part": part,
        "parts": [(p, parts[p.key]) for p in PARTS[q.metric]],
        "totals": parts[part.key],
        "adds_up_to": recompute(q.metric, parts),
        "published": published_value(q, facts.attribution_model),
        "page": Paging(number, num_pages, count),
        "sort": sort,
        "columns": FAMILY_COLUMNS[part.family],
    }


def csv_header(part: Part) -> list[str]:
    return [c[0] for c in FAMILY_COLUMNS[part.family]] + (["in_numerator"] if part.counted else [])


def csv_rows(facts: Facts, q: Query, *, sort: str = "") -> Iterator[list[str]]:
    """The header and every row behind `q` as CSV fields (amounts with two decimals, ISO dates)."""
    part = q.the_part()
    yield csv_header(part)
    for row in iter_rows(facts, q, sort=sort):
        fields = ["" if row[c[0]] is None else str(row[c[0]]) for c in FAMILY_COLUMNS[part.family]]
        if part.counted:
            fields.append("1" if row["counted"] else "0")
        yield fields


def cents(amount: int) -> Decimal:
    return (Decimal(int(amount)) / 100).quantize(_CENT)


class _Echo:
    """csv.writer target that hands each formatted line back (a streamed response)."""

    def write(self, line: str) -> str:
        return line


def csv_lines(facts: Facts, q: Query, *, sort: str = "") -> Iterator[str]:
    """Every row behind `q` as CSV lines (RFC 4180), header first: a streamed download's body."""
    writer = csv.writer(_Echo())
    for fields in csv_rows(facts, q, sort=sort):
        yield writer.writerow(fields)


def csv_filename(q: Query) -> str:
    scope = f"-{q.scope}-{q.sid}" if q.sid else ""
    return f"{q.metric}-{span_param(q.period)}{scope}-{q.part}.csv"


def link_queries(params: QueryDict) -> dict[str, str]:
    """The query strings a page links with: itself without `page`, the sort links' and the parts'
    bases, and the CSV download."""
    query = params.copy()
    query.pop("page", None)
    sort_query = query.copy()
    sort_query.pop("sort", None)
    part_query = sort_query.copy()
    part_query.pop("part", None)
    csv_query = query.copy()
    csv_query["format"] = "csv"
    return {
        "query": query.urlencode(),
        "sort_base": sort_query.urlencode(),
        "part_base": part_query.urlencode(),
        "csv_query": csv_query.urlencode(),
    }
