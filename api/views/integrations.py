"""Webhook endpoints (partner managers) and the change feed (everyone, scoped by role)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from api import integration_serializers as s
from api.idempotency import IdempotentPostMixin
from api.pagination import StandardPagination
from api.permissions import acting_partner, can_write_all, is_staff_reader
from api.schema import errors
from api.throttling import WRITE_SCOPE, WriteThrottle
from events import changes
from integrations import services
from integrations.models import WebhookDelivery, WebhookEndpoint

ENDPOINT_EXAMPLE = {
    "id": 4,
    "url": "https://crm.example.com/hooks/prm",
    "description": "CRM sync",
    "event_types": ["registration.approved", "deal.won"],
    "secret": "whsec_3kQ…(43 characters)",
    "owner": 7,
    "is_active": True,
    "disabled_at": None,
    "disabled_reason": "",
    "last_success_at": "2026-05-20T16:30:02Z",
    "consecutive_failures": 0,
    "created_at": "2026-03-02T09:15:00Z",
}
DELIVERY_EXAMPLE = {
    "id": 311,
    "event_id": "0b7f3a52-5d1e-4a8e-9d1c-0f7e6c1d2a33",
    "event_type": "deal.won",
    "status": "succeeded",
    "attempts": 2,
    "created_at": "2026-05-20T16:30:00Z",
    "next_attempt_at": "2026-05-20T16:30:41Z",
    "delivered_at": "2026-05-20T16:30:42Z",
    "last_status_code": 200,
    "last_error": "",
    "attempt_log": [
        {
            "number": 2,
            "started_at": "2026-05-20T16:30:41Z",
            "succeeded": True,
            "status_code": 200,
            "latency_ms": 87,
            "response_excerpt": '{"ok": true}',
            "error": "",
        }
    ],
}


class WebhookManager(BasePermission):
    """Partner managers only: endpoints carry every partner's events and their secret."""

    message = "Only partner managers manage webhooks."

    def has_permission(self, request, view) -> bool:
        return request.user.is_authenticated and can_write_all(request)


@extend_schema_view(
    list=extend_schema(
        summary="List webhook endpoints",
        responses={200: s.WebhookEndpointSerializer(many=True), **errors(403)},
        examples=[OpenApiExample("An endpoint", value=[ENDPOINT_EXAMPLE], response_only=True)],
    ),
    retrieve=extend_schema(
        summary="Get a webhook endpoint",
        responses={200: s.WebhookEndpointSerializer, **errors(403, 404)},
        examples=[OpenApiExample("An endpoint", value=ENDPOINT_EXAMPLE, response_only=True)],
    ),
    create=extend_schema(
        summary="Register a webhook endpoint",
        description="Partner managers only. The answer holds the signing secret (docs/integrations.md). "
        "Only http(s) URLs on public addresses are accepted.",
        request=s.WebhookEndpointInputSerializer,
        responses={201: s.WebhookEndpointSerializer, **errors(400, 403, 429)},
        examples=[
            OpenApiExample(
                "Endpoint",
                value={"url": "https://crm.example.com/hooks/prm", "event_types": ["deal.won"]},
                request_only=True,
            ),
            OpenApiExample("Registered", value=ENDPOINT_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    ),
    partial_update=extend_schema(
        summary="Change a webhook endpoint",
        description="Only the fields sent change; `is_active: true` re-enables a disabled endpoint.",
        request=s.WebhookEndpointUpdateSerializer,
        responses={200: s.WebhookEndpointSerializer, **errors(400, 403, 404, 429)},
        examples=[
            OpenApiExample("Re-enable", value={"is_active": True}, request_only=True),
            OpenApiExample("Changed", value=ENDPOINT_EXAMPLE, response_only=True),
        ],
    ),
    destroy=extend_schema(
        summary="Delete a webhook endpoint", responses={204: None, **errors(403, 404, 429)}
    ),
    deliveries=extend_schema(
        summary="An endpoint's delivery log",
        description="Newest first: each delivery with its attempts (status, latency, start of the answer).",
        responses={200: s.WebhookDeliverySerializer(many=True), **errors(403, 404)},
        examples=[OpenApiExample("A delivery", value=[DELIVERY_EXAMPLE], response_only=True)],
    ),
    send_test=extend_schema(
        summary="Send a test event",
        description="Queues a `webhook.test` event to this endpoint only; its delivery shows in the log.",
        request=None,
        responses={202: s.WebhookDeliverySerializer, **errors(403, 404, 429)},
        examples=[
            OpenApiExample(
                "Queued",
                value={**DELIVERY_EXAMPLE, "status": "pending"},
                response_only=True,
                status_codes=["202"],
            )
        ],
    ),
    replay=extend_schema(
        summary="Replay one delivery",
        description="Sends the delivery's event again (same event id) with a fresh retry window.",
        request=None,
        parameters=[OpenApiParameter("delivery_id", OpenApiTypes.INT, location=OpenApiParameter.PATH)],
        responses={202: s.WebhookDeliverySerializer, **errors(400, 403, 404, 429)},
        examples=[
            OpenApiExample(
                "Queued",
                value={**DELIVERY_EXAMPLE, "status": "pending"},
                response_only=True,
                status_codes=["202"],
            )
        ],
    ),
)
class WebhookEndpointViewSet(
    IdempotentPostMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    permission_classes = [WebhookManager]
    throttle_classes = [WriteThrottle]
    throttle_scope = WRITE_SCOPE
    serializer_class = s.WebhookEndpointSerializer
    pagination_class = StandardPagination
    queryset = WebhookEndpoint.objects.order_by("-created_at", "-id")
    filter_backends: list = []
    lookup_value_regex = "[0-9]{1,18}"

    def _input(self, serializer_class) -> dict:
        if not isinstance(self.request.data, dict):
            raise ValidationError({"non_field_errors": ["The body must be a JSON object."]})
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def create(self, request):
        endpoint = services.endpoint_create(
            owner=request.user, **self._input(s.WebhookEndpointInputSerializer)
        )
        return Response(s.WebhookEndpointSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        fields = self._input(s.WebhookEndpointUpdateSerializer)  # a malformed body is a 400 before a 404
        endpoint = services.endpoint_update(endpoint=self.get_object(), **fields)
        return Response(s.WebhookEndpointSerializer(endpoint).data)

    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        endpoint = self.get_object()
        queryset = (
            WebhookDelivery.objects.filter(endpoint=endpoint)
            .select_related("event")
            .prefetch_related("attempt_log")
            .order_by("-created_at", "-id")
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.WebhookDeliverySerializer(page, many=True).data)

    @action(detail=True, methods=["post"], url_path="test")
    def send_test(self, request, pk=None):
        delivery = services.endpoint_send_test(endpoint=self.get_object())
        return Response(s.WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @action(detail=True, methods=["post"], url_path=r"deliveries/(?P<delivery_id>[0-9]{1,18})/replay")
    def replay(self, request, pk=None, delivery_id=None):
        delivery = get_object_or_404(WebhookDelivery, pk=delivery_id, endpoint=self.get_object())
        delivery = services.delivery_replay(delivery=delivery)
        return Response(s.WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class ChangeFeedView(APIView):
    """GET /api/v1/changes/?after=<cursor>: what changed since the cursor, in commit order."""

    @extend_schema(
        summary="Read the change feed",
        description=(
            "Created, updated and deleted objects of every resource, oldest first, after the opaque "
            "cursor `after` (empty: from the start). A change whose transaction is still in flight is "
            "held back until it commits, so a cursor never skips a change (docs/integrations.md). "
            "Staff see every change; a partner user only those of its own partner's objects."
        ),
        tags=["integrations"],
        parameters=[s.ChangeQuerySerializer],
        responses={200: s.ChangePageSerializer, **errors(400)},
        examples=[
            OpenApiExample(
                "Two changes",
                value={
                    "results": [
                        {
                            "resource": "deals",
                            "id": 9001,
                            "action": "updated",
                            "changed_at": "2026-05-20T16:30:00Z",
                            "url": "/api/v1/deals/9001/",
                        },
                        {
                            "resource": "touches",
                            "id": 77,
                            "action": "deleted",
                            "changed_at": "2026-05-20T16:31:00Z",
                            "url": None,
                        },
                    ],
                    "next_cursor": "djE6ODQxMjo1MTI",
                    "has_more": False,
                },
                response_only=True,
            )
        ],
    )
    def get(self, request):
        query = s.ChangeQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            cursor = changes.Cursor.decode(query.validated_data["after"])
        except changes.BadCursor as exc:
            raise ValidationError({"after": [str(exc)]}) from None
        limit = query.validated_data["limit"]
        partner = acting_partner(request)
        rows = list(
            changes.changes_after(
                cursor,
                partner_id=partner.pk if partner is not None else None,
                staff=is_staff_reader(request),
                limit=limit + 1,
            )
        )
        page = rows[:limit]
        last = changes.Cursor(page[-1].txid, page[-1].id) if page else cursor
        body = {"results": page, "next_cursor": last.encode(), "has_more": len(rows) > limit}
        return Response(s.ChangePageSerializer(body).data)
