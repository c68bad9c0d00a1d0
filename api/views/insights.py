"""Staff insights: the KPI heat map (peer percentiles) and the pipeline forecast with its backtest.

Thin: kpis.peers computes in the database, the forecast is read as stored after the last KPI
publication (kpis.forecast_store); these validate the query (400 with field errors) and shape the
answer.
"""

from dataclasses import replace
from typing import Any

from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.pagination import StandardPagination
from api.permissions import StaffReader
from api.schema import errors
from api.throttling import COMPUTE_SCOPE, ScopedThrottle
from kpis.forecast_store import forecast_requested, scope_forecast, stored_forecast
from kpis.metrics import Grain
from kpis.peers import HEATMAP_METRICS, HEATMAP_SORTS, PeerGroup, heat_map, heat_map_arguments
from kpis.periods import period_or_none


def money() -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=16, decimal_places=2)


def percent_error() -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=12, decimal_places=1, allow_null=True)


class HeatMapQuerySerializer(serializers.Serializer):
    grain = serializers.ChoiceField(choices=[g.value for g in Grain], required=False, default="quarter")
    period = serializers.CharField(
        required=False, max_length=7, help_text="2026-03, 2026-Q1 or 2026; default the latest complete one."
    )
    metrics = serializers.CharField(
        required=False,
        help_text="Comma-separated partner metrics of a period; default sourced, influenced and attributed "
        "revenue, win rate sourced, leads generated, ROI. One of: " + ", ".join(HEATMAP_METRICS),
    )
    group = serializers.ChoiceField(choices=[g.value for g in PeerGroup], required=False, default="tier")
    only = serializers.CharField(
        required=False, max_length=100, help_text="One group only: a tier, a type, or a join source's key."
    )
    sort = serializers.ChoiceField(choices=list(HEATMAP_SORTS), required=False)
    direction = serializers.ChoiceField(choices=["asc", "desc"], required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=10**7, default=0)

    def validate_period(self, value: str) -> str:
        if value and period_or_none(value) is None:
            raise serializers.ValidationError("Not a period like 2026-03, 2026-Q1 or 2026.")
        return value

    def validate_metrics(self, value: str) -> list[str]:
        names = [m.strip() for m in value.split(",") if m.strip()]
        unknown = [m for m in names if m not in HEATMAP_METRICS]
        if unknown:
            raise serializers.ValidationError(f"Not partner metrics of a period: {', '.join(unknown)}.")
        return names


class CellSerializer(serializers.Serializer):
    metric = serializers.CharField()
    value = serializers.DecimalField(max_digits=24, decimal_places=4, allow_null=True)
    percentile = serializers.IntegerField(
        allow_null=True, help_text="0 the worst of its group, 100 the best."
    )
    top = serializers.IntegerField(
        allow_null=True, help_text="Top N% of its group (N): the share at least as good."
    )
    bottom = serializers.IntegerField(
        allow_null=True, help_text="Bottom N% of its group: the share at most as good."
    )
    peers = serializers.IntegerField(help_text="Partners of the group ranked on this metric.")


class HeatRowSerializer(serializers.Serializer):
    partner_id = serializers.IntegerField()
    name = serializers.CharField()
    tier = serializers.CharField()
    type = serializers.CharField()
    join_source = serializers.CharField()
    group = serializers.CharField()
    cells = CellSerializer(many=True)


class HeatMapSerializer(serializers.Serializer):
    period = serializers.CharField()
    group = serializers.CharField()
    metrics = serializers.ListField(child=serializers.CharField())
    count = serializers.IntegerField()
    results = HeatRowSerializer(many=True)


HEAT_MAP_EXAMPLE = {
    "period": "2026-Q1",
    "group": "tier",
    "metrics": ["win_rate_sourced"],
    "count": 1,
    "results": [
        {
            "partner_id": 12,
            "name": "Northwind Consulting",
            "tier": "gold",
            "type": "Reseller",
            "join_source": "Website",
            "group": "gold",
            "cells": [
                {
                    "metric": "win_rate_sourced",
                    "value": "0.7500",
                    "percentile": 100,
                    "top": 34,
                    "bottom": 100,
                    "peers": 3,
                }
            ],
        }
    ],
}


@extend_schema(
    tags=["kpis"],
    summary="KPI heat map: partners × metrics with peer percentiles",
    description=(
        "Staff only. Published partner values of one period; each cell with the partner's percentile "
        "within its peer group (same tier, type or join source) in the metric's better direction "
        "(lower is better for cost, CAC and day counts), computed with PERCENT_RANK / CUME_DIST in "
        "the database. A missing money or count value reads 0; an undefined ratio has no percentile. "
        "docs/kpis.md, 'Peer percentiles'."
    ),
    parameters=[HeatMapQuerySerializer],
    responses={200: HeatMapSerializer, **errors(400, 401, 403)},
    examples=[OpenApiExample("Heat map", value=HEAT_MAP_EXAMPLE, response_only=True)],
)
class HeatMapView(APIView):
    permission_classes = [StaffReader]

    def get(self, request: Request) -> Response:
        query = HeatMapQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(query.validated_data)
        arguments = heat_map_arguments(data)
        total, rows = heat_map(**arguments, limit=data["limit"], offset=data["offset"])
        payload = {
            "period": arguments["period"].label,
            "group": arguments["group"].value,
            "metrics": arguments["metrics"],
            "count": total,
            "results": rows,
        }
        return Response(HeatMapSerializer(payload).data)


class ScopeForecastSerializer(serializers.Serializer):
    scope = serializers.CharField()
    scope_id = serializers.IntegerField()
    name = serializers.CharField()
    sourced = money()
    influenced = money()
    backtest_sourced = money()
    backtest_influenced = money()
    actual_sourced = money()
    actual_influenced = money()
    error_sourced = percent_error()
    error_influenced = percent_error()


class BacktestSerializer(serializers.Serializer):
    quarter = serializers.CharField()
    forecast_sourced = money()
    forecast_influenced = money()
    actual_sourced = money()
    actual_influenced = money()
    error_sourced = percent_error()
    error_influenced = percent_error()


class RateSerializer(serializers.Serializer):
    segment = serializers.CharField()
    bucket = serializers.IntegerField()
    bucket_label = serializers.CharField()
    won = serializers.IntegerField()
    open = serializers.IntegerField()


class ForecastSerializer(serializers.Serializer):
    quarter = serializers.CharField()
    as_of = serializers.DateField()
    rates = RateSerializer(many=True)
    program = ScopeForecastSerializer()
    join_sources = ScopeForecastSerializer(many=True)
    partners = ScopeForecastSerializer(many=True)
    backtest = BacktestSerializer(many=True)


class ForecastPageSerializer(ForecastSerializer):
    """The forecast with one page of its partners, largest forecast first (`partners`), paginated
    like the other lists (api.pagination.StandardPagination): `count` partners in all."""

    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


_SCOPE_EXAMPLE = {
    "sourced": "1200.00",
    "influenced": "300.00",
    "backtest_sourced": "1050.00",
    "backtest_influenced": "0.00",
    "actual_sourced": "1500.00",
    "actual_influenced": "2000.00",
    "error_sourced": "-30.0",
    "error_influenced": "-100.0",
}
FORECAST_EXAMPLE = {
    "count": 1,
    "next": None,
    "previous": None,
    "quarter": "2026-Q4",
    "as_of": "2026-07-15",
    "rates": [{"segment": "sourced", "bucket": 0, "bucket_label": "0–30 days", "won": 2, "open": 4}],
    "program": {"scope": "program", "scope_id": 0, "name": "Program", **_SCOPE_EXAMPLE},
    "join_sources": [{"scope": "join_source", "scope_id": 3, "name": "Website", **_SCOPE_EXAMPLE}],
    "partners": [{"scope": "partner", "scope_id": 12, "name": "Northwind Consulting", **_SCOPE_EXAMPLE}],
    "backtest": [
        {
            "quarter": "2026-Q2",
            "forecast_sourced": "1050.00",
            "forecast_influenced": "0.00",
            "actual_sourced": "1000.00",
            "actual_influenced": "2000.00",
            "error_sourced": "5.0",
            "error_influenced": "-100.0",
        }
    ],
}


class ForecastNotComputed(exceptions.APIException):
    status_code = 503
    default_detail = (
        "The forecast has not been computed yet: it is computed after each KPI publication, and has "
        "been requested now."
    )
    default_code = "not_computed"
    wait = 60  # Retry-After (api.exceptions)


@extend_schema(
    tags=["kpis"],
    summary="Pipeline forecast of next quarter, with a four-quarter backtest",
    description=(
        "Staff only. Next quarter's sourced and influenced revenue from the deals open now: each deal's "
        "amount × the historical win rate of its segment and age bucket (deals open at the start of each "
        "of the last four closed quarters, won during it). For the program, each join source (each deal "
        "once) and each partner; with the same method backtested at the start of the last four closed "
        "quarters, its error in percent ((forecast − actual) / actual). docs/kpis.md, 'Forecast'. "
        "Read as stored after the last KPI publication (`Last-Modified`: when it was computed); 503 "
        "with Retry-After before the first one. The partners are paginated like the other lists "
        "(`page`, `page_size`; `count`, `next`, `previous`), largest forecast first; every page "
        "repeats the program, join sources, rates and backtest."
    ),
    parameters=[
        OpenApiParameter("page", OpenApiTypes.INT, description="Page number of the partners."),
        OpenApiParameter(
            "page_size", OpenApiTypes.INT, description="Partners per page (default 50, at most 500)."
        ),
    ],
    responses={200: ForecastPageSerializer, **errors(401, 403, 404, 429, 503)},
    examples=[OpenApiExample("Forecast", value=FORECAST_EXAMPLE, response_only=True)],
)
class ForecastView(APIView):
    permission_classes = [StaffReader]
    # Read from the stored snapshot a page of partners at a time; throttled like the attribution.
    throttle_classes = [ScopedThrottle]
    throttle_scope = COMPUTE_SCOPE

    def get(self, request: Request) -> Response:
        stored = stored_forecast()
        if stored is None:
            forecast_requested()
            raise ForecastNotComputed()
        paginator = StandardPagination()
        page = paginator.paginate_queryset(stored.partner_rows(), request, view=self) or []
        partners = [scope_forecast(row) for row in page]
        assert paginator.page is not None  # set by paginate_queryset (a page size always applies)
        payload = {
            "count": paginator.page.paginator.count,
            "next": paginator.get_next_link(),
            "previous": paginator.get_previous_link(),
            **ForecastSerializer(replace(stored.forecast, partners=partners)).data,
        }
        response = Response(payload)
        response["Last-Modified"] = http_date(stored.computed_at.timestamp())
        return response
