"""Drill-down pages for staff: the rows behind any published KPI value (kpis.drilldown)."""

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from dashboards.permissions import staff_required
from dashboards.templatetags.drilldown import drill_href
from kpis import drilldown, drilldown_pages
from kpis.metrics import Scope
from kpis.metrics import label as metric_label
from partners.models import JoinSource, Partner


def csv_response(facts: drilldown.Facts, q: drilldown.Query, *, sort: str) -> StreamingHttpResponse:
    """Every row behind `q` as a streamed CSV download."""
    response = StreamingHttpResponse(
        drilldown_pages.csv_lines(facts, q, sort=sort), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{drilldown_pages.csv_filename(q)}"'
    return response


def drill_response(
    request: HttpRequest, q: drilldown.Query, *, subject: str, base: str, back: str
) -> HttpResponse | StreamingHttpResponse:
    """The page (or `?format=csv`) of the rows behind `q`; 503 before any KPI run published."""
    sort = request.GET.get("sort", "")
    try:
        facts = drilldown.published_facts()
    except drilldown.NoPublishedFacts:
        return render(request, "dashboards/drilldown_unavailable.html", {"base_template": base}, status=503)
    if request.GET.get("format") == "csv":
        return csv_response(facts, q, sort=sort)
    context = drilldown_pages.page_context(facts, q, sort=sort, page_number=request.GET.get("page", 1))
    context.update(
        drilldown_pages.link_queries(request.GET),
        base_template=base,
        metric=q.metric,
        metric_label=metric_label(q.metric),
        subject=subject,
        period=q.period,
        back=back,
    )
    return render(request, "dashboards/drilldown.html", context)


@require_GET
@staff_required
def drill(request: HttpRequest, metric: str) -> HttpResponse | StreamingHttpResponse:
    """`/dashboard/drill/<metric>/?period=2026-03|2026-01..2026-11[&partner=<id>|&join_source=<id>][&part=][&sort=]`."""
    scope, sid, subject = Scope.PROGRAM.value, 0, "Program"
    if "partner" in request.GET:
        partner = get_object_or_404(Partner, pk=_id(request.GET["partner"]))
        scope, sid, subject = Scope.PARTNER.value, partner.pk, partner.name
    elif "join_source" in request.GET:
        source = get_object_or_404(JoinSource, pk=_id(request.GET["join_source"]))
        scope, sid, subject = Scope.JOIN_SOURCE.value, source.pk, f"Join source {source.name}"
    if not drilldown.drillable(metric, scope):
        raise Http404("No such KPI in this scope.")
    try:
        period = drilldown.drill_span(metric, request.GET.get("period"))
    except ValueError as error:
        return render(
            request,
            "dashboards/drilldown_unavailable.html",
            {"base_template": "dashboards/base.html", "error": str(error)},
            status=400,
        )
    q = drilldown.Query(metric, scope, sid, period, request.GET.get("part", "rows"))
    return drill_response(request, q, subject=subject, base="dashboards/base.html", back="")


def _id(text: str) -> int:
    if not text.isdigit():
        raise Http404("No such partner or join source.")
    return int(text)


def add_chart_links(
    chart: dict,
    metrics: list[str | None],
    periods: list[str],
    scope: str = "program",
    sids: list | None = None,
) -> dict:
    """Give a chart (dashboards.charts.chart) the drill-down URL of each point: series i is the
    metric `metrics[i]` (None: no rows to open), label j the period `periods[j]` and, for a chart
    of join sources or partners, the scope id `sids[j]`. The chart's script opens a point's URL on
    click and its table links each number."""
    chart["links"] = [
        [
            drill_href(metric, period, scope, sids[j] if sids else 0) if metric else ""
            for j, period in enumerate(periods)
        ]
        for metric in metrics
    ]
    return chart
