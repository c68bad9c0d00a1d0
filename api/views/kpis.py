"""Costs, targets, the published KPI values, recompute runs, on-request attribution, the
reconciliation report and the KPI export."""

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any

from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from api import examples as ex
from api import serializers as s
from api.caching import PublishedSetCacheMixin, not_modified, published_etag, tag_response
from api.examples import listed, one
from api.filters import CostEntryFilterSet, KpiRunFilterSet, KpiValueFilterSet, TargetFilterSet
from api.idempotency import IdempotentPostMixin
from api.pagination import KpiValueCursorPagination, StandardPagination
from api.permissions import MoneyReader, RecomputeTrigger, StaffReader, acting_partner, is_staff_reader
from api.schema import DETAIL_ERRORS, IF_NONE_MATCH, NOT_MODIFIED, READ_ERRORS, WRITE_ERRORS, errors
from api.throttling import COMPUTE_SCOPE, WRITE_SCOPE, ScopedThrottle, WriteThrottle
from api.views.base import ScopedViewSet
from kpis import services
from kpis.explorer import explorer_table
from kpis.export import export_rows, reads_published_set
from kpis.metrics import Grain, Scope
from kpis.models import CostEntry, KpiRun, KpiValue, Target
from kpis.reconciliation import iter_reconciliation_items
from kpis.selectors import visible_costs, visible_targets
from partners import access
from program.attribution import AttributionModel
from program.models import ProgramSettings

EXPORT_COLUMNS = ["scope", "scope_key", "period", "metric", "value", "target_metric"]


def visible_kpi_values(user):
    """Staff read the whole published set; a partner user only its own partner's rows."""
    if access.is_staff_reader(user):
        return KpiValue.objects.all()
    partner = access.partner_of(user)
    if partner is None:
        return KpiValue.objects.none()
    return KpiValue.objects.filter(scope=Scope.PARTNER, partner=partner)


@extend_schema_view(
    list=extend_schema(
        summary="List program costs",
        examples=[listed("A cost", ex.COST)],
        description="Staff see all; a partner user sees the costs tagged with its partner. `source` "
        "tells recorded and imported costs from those the program booked (paid commission payouts, "
        "reimbursed MDF claims); `counted` is false for a recorded cost a booked one supersedes.",
        responses={200: s.CostEntrySerializer(many=True), **errors(*READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="Get a cost entry",
        examples=[one("A cost", ex.COST)],
        responses={200: s.CostEntrySerializer, **errors(*DETAIL_ERRORS)},
    ),
    create=extend_schema(
        summary="Record a program cost",
        description="Records a cost of source `recorded`; a booked source (`commission_payout`, "
        "`mdf_reimbursement`) or a reference is refused with a 400.",
        request=s.CostEntryInputSerializer,
        responses={201: s.CostEntrySerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "MDF",
                value={"date": "2026-03-31", "amount": "2500.00", "category": "mdf", "partner": 12},
                request_only=True,
            )
        ],
    ),
)
@extend_schema(tags=["kpis"])
class CostEntryViewSet(ScopedViewSet):
    # Costs hold what partners were paid (commission payouts, MDF): money, which members never see.
    permission_classes = [*ScopedViewSet.permission_classes, MoneyReader]
    visible = staticmethod(visible_costs)
    queryset = CostEntry.objects.none()
    serializer_class = s.CostEntrySerializer
    filterset_class = CostEntryFilterSet
    ordering_fields = ["id", "date", "amount"]

    def create(self, request):
        fields = self.validated(s.CostEntryInputSerializer)
        del fields["source"], fields["reference"]  # validated: recorded, no reference
        cost = services.cost_entry_create(**fields)
        return self.output(CostEntry.objects.with_counted().get(pk=cost.pk), status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="List targets",
        examples=[listed("A target", ex.TARGET)],
        description="Staff see all; a partner user sees the targets set for its partner.",
        responses={200: s.TargetSerializer(many=True), **errors(*READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="Get a target",
        examples=[one("A target", ex.TARGET)],
        responses={200: s.TargetSerializer, **errors(*DETAIL_ERRORS)},
    ),
    create=extend_schema(
        summary="Set a target",
        description="Sets (or replaces) the target for a metric, period and optional partner or join source.",
        request=s.TargetInputSerializer,
        responses={201: s.TargetSerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Quarterly sourced revenue",
                value={"metric": "sourced_revenue", "period": "2026-Q2", "value": "250000", "partner": 12},
                request_only=True,
            )
        ],
    ),
)
@extend_schema(tags=["kpis"])
class TargetViewSet(ScopedViewSet):
    visible = staticmethod(visible_targets)
    queryset = Target.objects.none()
    serializer_class = s.TargetSerializer
    filterset_class = TargetFilterSet
    ordering_fields = ["id", "period_start", "metric"]

    def create(self, request):
        target = services.target_set(**self.validated(s.TargetInputSerializer))
        return self.output(target, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="List published KPI values",
        description=(
            "The latest published KPI set (KPIS.md defines every metric), one grain at a time (default: "
            "month) under one attribution model (default: the program's). Staff see every scope; a "
            "partner user sees only its own partner's rows. For another attribution model than the "
            "published ones, see `/kpi-attribution/`."
        ),
        parameters=[IF_NONE_MATCH],
        responses={200: s.KpiValueSerializer(many=True), **NOT_MODIFIED, **errors(400)},
        examples=[
            listed("Sourced revenue", ex.KPI_VALUE),
        ],
    ),
    retrieve=extend_schema(
        summary="Get a KPI value",
        examples=[one("A KPI value", ex.KPI_VALUE)],
        responses={200: s.KpiValueSerializer, **errors(404)},
    ),
)
@extend_schema(tags=["kpis"])
class KpiValueViewSet(PublishedSetCacheMixin, ScopedViewSet):
    visible = staticmethod(visible_kpi_values)
    queryset = KpiValue.objects.none()
    serializer_class = s.KpiValueSerializer
    filterset_class = KpiValueFilterSet
    pagination_class = KpiValueCursorPagination
    ordering_fields = ["id", "period_start"]
    http_method_names = ["get", "head", "options"]


@extend_schema_view(
    list=extend_schema(
        summary="List KPI recompute runs",
        examples=[listed("A finished run", ex.KPI_RUN)],
        description="Staff only. Newest first; a run's status is queued, running, succeeded or failed.",
        responses={200: s.KpiRunSerializer(many=True), **errors(403)},
    ),
    retrieve=extend_schema(
        summary="Get a KPI recompute run (poll this after triggering one)",
        examples=[one("A finished run", ex.KPI_RUN)],
        responses={200: s.KpiRunSerializer, **errors(403, 404)},
    ),
    create=extend_schema(
        summary="Trigger a KPI recompute",
        description=(
            "Partner managers and sales ops. Answers 202 at once with the queued run (or the run already "
            "queued or running, so double clicks never start two) and its URL in `Location`: poll it."
        ),
        request=s.KpiRunInputSerializer,
        responses={
            202: OpenApiResponse(s.KpiRunSerializer, description="Queued; poll the run's `url`."),
            **errors(400, 403, 429),
        },
        examples=[OpenApiExample("Full recompute", value={"mode": "full"}, request_only=True)],
    ),
)
@extend_schema(tags=["kpis"])
class KpiRunViewSet(
    IdempotentPostMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = KpiRun.objects.all()
    serializer_class = s.KpiRunSerializer
    filterset_class = KpiRunFilterSet
    pagination_class = StandardPagination
    permission_classes = [RecomputeTrigger]
    throttle_classes = [WriteThrottle]
    throttle_scope = WRITE_SCOPE
    ordering_fields = ["id", "created_at"]

    def create(self, request, *args, **kwargs):
        data = s.KpiRunInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.kpi_recompute_request(
            trigger=KpiRun.Trigger.MANUAL, requested_by=request.user, **data.validated_data
        )
        url = request.build_absolute_uri(reverse("api:kpi-run-detail", args=[run.pk]))
        body = self.get_serializer(run).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


@extend_schema(
    tags=["kpis"],
    summary="Attribution by partner under any model, computed on request",
    description=(
        "Sourced, influenced and attributed revenue per partner for deals won in the date range, under "
        "the attribution model asked for (default: the program's), from the deals and touches of the "
        "run that published the KPI set (each range computed once per run, then read back), rather "
        "than read from the published values. Paginated like the other lists (`page`, `page_size`), "
        "in partner id order. A partner user gets only its own row."
    ),
    parameters=[
        OpenApiParameter("model", OpenApiTypes.STR, enum=[m.value for m in AttributionModel]),
        OpenApiParameter(
            "period_from", OpenApiTypes.DATE, required=True, description="First day, inclusive."
        ),
        OpenApiParameter("period_to", OpenApiTypes.DATE, required=True, description="Last day, inclusive."),
        OpenApiParameter("page", OpenApiTypes.INT, description="Page number (partners in id order)."),
        OpenApiParameter(
            "page_size", OpenApiTypes.INT, description="Rows per page (default 50, at most 500)."
        ),
    ],
    responses={200: s.AttributionPageSerializer, **errors(400)},
    examples=[
        OpenApiExample(
            "One partner",
            value={
                "count": 1,
                "next": None,
                "previous": None,
                "results": [
                    {
                        "partner_id": 12,
                        "partner_key": "P-0012",
                        "partner_name": "Northwind Consulting",
                        "sourced": "18000.00",
                        "influenced": "4000.00",
                        "attributed": "19333.33",
                    }
                ],
            },
            response_only=True,
        )
    ],
)
class AttributionView(APIView):
    # Computed on request over every won deal: throttled like a write.
    throttle_classes = [ScopedThrottle]
    throttle_scope = COMPUTE_SCOPE

    def get(self, request):
        query = s.AttributionQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        staff = is_staff_reader(request)
        partner = None if staff else acting_partner(request)
        if not staff and partner is None:
            return Response({"count": 0, "next": None, "previous": None, "results": []})
        model = data["model"] or _program_model()
        # From the published facts (kpis.explorer: stored once per published run and range, then
        # paged in the database); computed only before any run, and then only this model.
        table = explorer_table(period_from=data["period_from"], period_to=data["period_to"], models=[model])
        rows: Any = table.ordered("id", False) if partner is None else table.partner_rows(partner.pk)
        paginator = StandardPagination()
        page = paginator.paginate_queryset(rows, request, view=self) or []
        data = [r.attributed_under(model) for r in page]
        return paginator.get_paginated_response(s.AttributionRowSerializer(data, many=True).data)


def _program_model() -> str:
    return ProgramSettings.load().attribution_model


@extend_schema(
    tags=["kpis"],
    summary="Reconciliation report",
    description=(
        "Facts that are legal but suspicious (KPIS.md, Data quality): deals sourced before the partner "
        "joined, touches after close, two registrations claiming the same customer. Staff only."
    ),
    responses={200: s.ReconciliationItemSerializer(many=True), **errors(403)},
    examples=[
        OpenApiExample(
            "A touch after close",
            value=[
                {
                    "kind": "touch_after_close",
                    "description": "Touch 77 by Northwind Consulting is dated after deal D-9001 closed.",
                    "ids": {"touch": [77], "deal": [9001], "partner": [12]},
                }
            ],
            response_only=True,
        )
    ],
)
class ReconciliationView(APIView):
    permission_classes = [StaffReader]

    def get(self, request):
        # Streamed, item by item: the report grows with the program (the same JSON array).
        items = (s.ReconciliationItemSerializer(item).data for item in iter_reconciliation_items())
        return StreamingHttpResponse(_json_array(items), content_type="application/json")


class CSVRenderer(BaseRenderer):
    """Only names the format for content negotiation; the export view streams the body itself."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes | str) else json.dumps(data)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(rows: Iterable[dict]) -> Iterator[str]:
    writer = csv.DictWriter(_Echo(), fieldnames=EXPORT_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    yield writer.writeheader()
    for row in rows:
        yield writer.writerow({**row, "target_metric": row.get("target_metric", "")})


def _json_array(items: Iterable[dict]) -> Iterator[str]:
    yield "["
    for index, item in enumerate(items):
        yield ("," if index else "") + json.dumps(item)
    yield "]"


def _json_chunks(rows: Iterable[dict]) -> Iterator[str]:
    yield "["
    for index, row in enumerate(rows):
        row = {column: row.get(column, "") for column in EXPORT_COLUMNS}
        yield ("," if index else "") + json.dumps(row)
    yield "]"


@extend_schema(
    tags=["kpis"],
    summary="Export the published KPI set (INTERCHANGE format)",
    description=(
        "The same rows as `manage.py export_kpis`: columns scope, scope_key, period, metric, value and "
        "target_metric; values are decimal strings, empty when undefined. CSV with `?format=csv` or "
        "`Accept: text/csv`, else JSON. Streamed, so large sets never sit in memory. Staff only."
    ),
    parameters=[
        OpenApiParameter(
            "grain", OpenApiTypes.STR, enum=[g.value for g in Grain], description="Default: month."
        ),
        OpenApiParameter(
            "model",
            OpenApiTypes.STR,
            enum=[m.value for m in AttributionModel],
            description="Default: the program's.",
        ),
        OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"]),
        IF_NONE_MATCH,
    ],
    responses={
        **NOT_MODIFIED,
        (200, "application/json"): s.ExportRowSerializer(many=True),
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="RFC 4180 CSV with a header row."),
        **errors(400, 403),
    },
    examples=[
        OpenApiExample(
            "CSV",
            value="scope,scope_key,period,metric,value,target_metric\r\nprogram,,2026-03,won_revenue,18000.00,\r\n",
            response_only=True,
            media_type="text/csv",
        )
    ],
)
class KpiExportView(APIView):
    permission_classes = [StaffReader]
    throttle_classes = [ScopedThrottle]
    throttle_scope = COMPUTE_SCOPE
    renderer_classes = [JSONRenderer, CSVRenderer]

    def get(self, request):
        query = s.ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        # The published model's export reads only the published set: tagged, so a BI tool polling
        # with If-None-Match gets 304 instead of every row again until the next publication.
        etag = published_etag(request)[1] if reads_published_set(data["model"]) else None
        if etag is not None and (unchanged := not_modified(request, etag)) is not None:
            return unchanged
        rows = export_rows(
            grain=data["grain"],
            model=data["model"] or None,
            scope=data.get("scope"),
            scope_key=data.get("scope_key"),
            period_from=data.get("period_from"),
            period_to=data.get("period_to"),
        )
        if request.accepted_renderer.format == "csv":
            response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
            filename = f"kpis-{data['grain']}.csv"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
        else:
            response = StreamingHttpResponse(_json_chunks(rows), content_type="application/json")
        return tag_response(response, etag) if etag is not None else response
