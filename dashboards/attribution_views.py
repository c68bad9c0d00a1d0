"""The attribution explorer: every partner's revenue of a period under each attribution model, a
page at a time (kpis.explorer sorts, pages and totals in the database), with a CSV of every row."""

from __future__ import annotations

import csv

from django.core.paginator import Paginator
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboards import charts
from dashboards.permissions import staff_required
from dashboards.selection import sort_links
from dashboards.views import _period_context
from kpis.explorer import MODELS, SORTS, Ordered, explorer_table
from kpis.periods import Period
from prm.http import AuthenticatedRequest

PAGE_SIZE = 25
CHART_ROWS = 10


@require_GET
@staff_required
def attribution(request: AuthenticatedRequest) -> HttpResponse | StreamingHttpResponse:
    period, context = _period_context(request)
    program_model = context["model"]
    sort = request.GET.get("sort", "")
    if sort not in SORTS:
        sort = program_model
    descending = request.GET.get("direction", "asc" if sort == "partner" else "desc") != "asc"
    table = explorer_table(period_from=period.start, period_to=period.end)
    ordered = table.ordered(sort, descending)
    if request.GET.get("format") == "csv":
        return _csv(ordered, period)
    page = Paginator(ordered, PAGE_SIZE).get_page(request.GET.get("page"))
    # The chart: the program model's top partners (the first page's rows when that is the order).
    top = (
        list(page.object_list)[:CHART_ROWS]
        if (sort, descending, page.number) == (program_model, True, 1)
        else (table.ordered(program_model, True)[:CHART_ROWS])
    )
    query = request.GET.copy()
    query.pop("page", None)
    csv_query = query.copy()
    csv_query["format"] = "csv"
    links = sort_links(query, SORTS, current=sort, descending=descending, ascending_first=("partner",))
    totals = table.totals
    context.update(
        rows=page.object_list,
        page=page,
        query=query.urlencode(),
        csv_query=csv_query.urlencode(),
        sort=sort,
        descending=descending,
        sort_links=links,
        model_links=[(m, links[m]) for m in MODELS],
        total=totals,
        sourced_total=totals.sourced,
        influenced_total=totals.influenced,
        totals=totals.cells,
        models=list(MODELS),
        program_model=program_model,
        # The program's model is the published one: its column drills into the published shares.
        program_index=MODELS.index(program_model),
        attribution_chart=charts.chart(
            "attribution-chart",
            f"Attributed revenue by model, top partners, {period.label}",
            [r.partner_name for r in top],
            [(m.replace("_", " "), [r.models.get(m) for r in top]) for m in MODELS],
            label_heading="Partner",
        ),
    )
    return render(request, "dashboards/attribution.html", context)


class _Echo:
    """csv.writer target that hands each formatted line back (a streamed response)."""

    def write(self, line: str) -> str:
        return line


CSV_HEADER = ["partner_id", "partner_key", "partner_name", "period", "sourced", "influenced", *MODELS]


def _csv(ordered: Ordered, period: Period) -> StreamingHttpResponse:
    """Every row of the period in the page's order, streamed a thousand rows per query."""
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(CSV_HEADER)
        for r in ordered:
            yield writer.writerow(
                [r.partner_id, r.partner_key, r.partner_name, period.label, r.sourced, r.influenced, *r.cells]
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="attribution-{period.label.replace(" ", "-")}.csv"'
    )
    return response
