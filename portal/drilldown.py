"""The partner's drill-down: the rows behind its own published figures, and nobody else's."""

from typing import cast

from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from kpis import drilldown, drilldown_pages
from kpis.metrics import Scope
from kpis.metrics import label as metric_label
from portal.permissions import PartnerRequest, partner_required

BASE = "portal/base.html"


@require_GET
@partner_required
def drill(request: PartnerRequest, metric: str) -> HttpResponse:
    """`/portal/drill/<metric>/?period=2026-03|2026-01..2026-11[&part=][&sort=][&format=csv]`: the
    partner's own rows (its deals, its attribution shares, its touches, registrations and costs). A `partner`
    other than its own is a 404, like any other partner's row."""
    partner = request.partner
    if request.GET.get("partner", str(partner.pk)) != str(partner.pk):
        raise Http404("No such partner.")
    if not drilldown.drillable(metric, Scope.PARTNER):
        raise Http404("No such figure.")
    try:
        period = drilldown.drill_span(metric, request.GET.get("period"))
    except ValueError as error:
        return render(
            request,
            "dashboards/drilldown_unavailable.html",
            {"base_template": BASE, "error": str(error)},
            status=400,
        )
    q = drilldown.Query(metric, Scope.PARTNER.value, partner.pk, period, request.GET.get("part", "rows"))
    sort = request.GET.get("sort", "")
    try:
        facts = drilldown.published_facts()
    except drilldown.NoPublishedFacts:
        return render(request, "dashboards/drilldown_unavailable.html", {"base_template": BASE}, status=503)
    if request.GET.get("format") == "csv":
        response = StreamingHttpResponse(
            drilldown_pages.csv_lines(facts, q, sort=sort), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{drilldown_pages.csv_filename(q)}"'
        # partner_required wraps pages; a streamed download is handed through it alike.
        return cast(HttpResponse, response)
    context = drilldown_pages.page_context(facts, q, sort=sort, page_number=request.GET.get("page", 1))
    context.update(
        drilldown_pages.link_queries(request.GET),
        base_template=BASE,
        metric=metric,
        metric_label=metric_label(metric),
        subject=partner.name,
        period=period,
        back=reverse("portal:home"),
        # Every deal behind a partner's figure is one it sourced or touched: its portal page opens.
        deal_url=reverse("portal:deals"),
    )
    return render(request, "dashboards/drilldown.html", context)
