"""The rows behind a published KPI value (kpis.drilldown), for the API: `rows_url` of a KPI value."""

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import examples as ex
from api.permissions import acting_partner, is_staff_reader
from api.schema import errors
from api.views.kpis import CSVRenderer
from kpis import drilldown, drilldown_pages
from kpis.export import format_value
from kpis.metrics import Scope
from kpis.ranges import span_param
from partners.models import JoinSource, Partner


class NotPublished(exceptions.APIException):
    status_code = 503
    default_detail = "No KPI run has published its facts yet."
    default_code = "not_published"


def _id(text: str) -> int:
    if not text.isdigit():
        raise exceptions.NotFound("No such partner or join source.")
    return int(text)


@extend_schema(
    tags=["kpis"],
    summary="The rows behind a published KPI value",
    description=(
        "Deals (segment, amount), attribution shares, registrations, touched deals, a cohort's partners "
        "(activation, first sale), active partners, costs or new customers: the rows whose amounts and "
        "counts add up to the published value (`adds_up_to` equals `published`). Ratios have a "
        "`counted` flag on the rows of their numerator, or two parts (`part=numerator|denominator`); "
        "medians list their values ordered. Every KPI value's `rows_url` points here. Staff: any "
        "scope; a partner user: its own partner's values only (another partner's: 404). "
        "`format=csv` streams every row."
    ),
    parameters=[
        OpenApiParameter(
            "period",
            OpenApiTypes.STR,
            required=True,
            description="2026-03, 2026-Q1, 2026 or a range of months 2026-01..2026-11",
        ),
        OpenApiParameter("partner", OpenApiTypes.INT, description="A partner's id (partner scope)"),
        OpenApiParameter("join_source", OpenApiTypes.INT, description="A join source's id"),
        OpenApiParameter("part", OpenApiTypes.STR, description="rows (default), numerator, denominator"),
        OpenApiParameter("sort", OpenApiTypes.STR, description="A column; `-column` for descending"),
        OpenApiParameter("page", OpenApiTypes.INT),
        OpenApiParameter("format", OpenApiTypes.STR, description="csv: every row, streamed"),
    ],
    responses={200: OpenApiTypes.OBJECT, **errors(400, 403, 404)},
    examples=[OpenApiExample("A partner's sourced revenue", value=ex.KPI_DRILLDOWN, response_only=True)],
)
class KpiDrilldownView(APIView):
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]

    def get(self, request: Request, metric: str) -> Response | StreamingHttpResponse:
        q = self._query(request, metric)
        try:
            facts = drilldown.published_facts()
        except drilldown.NoPublishedFacts as exc:
            raise NotPublished(str(exc)) from None
        sort = request.query_params.get("sort", "")
        if request.query_params.get("format") == "csv":
            response = StreamingHttpResponse(
                drilldown_pages.csv_lines(facts, q, sort=sort), content_type="text/csv; charset=utf-8"
            )
            response["Content-Disposition"] = f'attachment; filename="{drilldown_pages.csv_filename(q)}"'
            return response
        page = drilldown_pages.page_context(
            facts, q, sort=sort, page_number=request.query_params.get("page", 1)
        )
        return Response(self._body(request, q, page))

    def _query(self, request: Request, metric: str) -> drilldown.Query:
        staff = is_staff_reader(request)
        partner = None if staff else acting_partner(request)
        if not staff and partner is None:
            raise exceptions.PermissionDenied("Only staff and partner users can drill into KPI values.")
        params = request.query_params
        scope, sid = Scope.PROGRAM.value, 0
        if "partner" in params:
            sid = _id(params["partner"])
            if partner is not None and sid != partner.pk or not Partner.objects.filter(pk=sid).exists():
                raise exceptions.NotFound("No such partner.")
            scope = Scope.PARTNER.value
        elif "join_source" in params:
            sid = _id(params["join_source"])
            if partner is not None or not JoinSource.objects.filter(pk=sid).exists():
                raise exceptions.NotFound("No such join source.")
            scope = Scope.JOIN_SOURCE.value
        elif partner is not None:  # a partner user's values are its own partner's
            scope, sid = Scope.PARTNER.value, partner.pk
        if not drilldown.drillable(metric, scope):
            raise exceptions.NotFound("No such KPI in this scope.")
        try:
            period = drilldown.drill_span(metric, params.get("period"))
        except ValueError as error:
            raise exceptions.ValidationError({"period": [str(error)]}) from error
        return drilldown.Query(metric, scope, sid, period, params.get("part", "rows"))

    def _body(self, request: Request, q: drilldown.Query, page: dict[str, Any]) -> dict[str, Any]:
        paging: drilldown_pages.Paging = page["page"]
        base = request.build_absolute_uri(request.path)
        params = request.query_params.copy()

        def link(number: int) -> str:
            params["page"] = str(number)
            return f"{base}?{params.urlencode()}"

        def part_link(key: str) -> str:
            p = request.query_params.copy()
            p.pop("page", None)
            p["part"] = key
            return f"{base}?{p.urlencode()}"

        totals = page["totals"]
        return {
            "metric": q.metric,
            "scope": q.scope,
            "partner": q.sid if q.scope == Scope.PARTNER else None,
            "join_source": q.sid if q.scope == Scope.JOIN_SOURCE else None,
            "period": span_param(q.period),
            "published": _value(q.metric, page["published"]),
            "adds_up_to": _value(q.metric, page["adds_up_to"]),
            "part": page["part"].key,
            "parts": [
                {"part": p.key, "role": p.role, "family": p.family, "rows": t.rows, "url": part_link(p.key)}
                for p, t in page["parts"]
            ],
            "totals": {
                "rows": totals.rows,
                "amount": _text(drilldown_pages.cents(totals.cents)),
                "counted": totals.counted,
                "counted_amount": _text(drilldown_pages.cents(totals.counted_cents)),
                "days": totals.days,
                "median_days": _text(totals.median_days),
            },
            "count": paging.count,
            "next": link(paging.number + 1) if paging.has_next() else None,
            "previous": link(paging.number - 1) if paging.has_previous() else None,
            "results": [{k: _text(v) for k, v in row.items()} for row in page["drill"].rows],
        }


def _text(value: object) -> Any:
    """Decimals and dates as strings (the export's spelling); the rest as they are."""
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _value(metric: str, value: Any) -> str | None:
    return None if value is None else format_value(metric, "", value)
