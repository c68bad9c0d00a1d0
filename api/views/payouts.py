"""Payout batches (staff), payouts and their statements (staff; a partner's admins their own).

A partner member is refused (403) on every endpoint here: money is for partner admins.
"""

from __future__ import annotations

from django.db.models import Count, QuerySet, Sum
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples as ex
from api import payout_serializers as s
from api.examples import listed, one
from api.permissions import MoneyReader, can_write_all, is_staff_reader
from api.schema import DETAIL_ERRORS, READ_ERRORS, WRITE_ERRORS, errors
from api.views.base import ScopedViewSet
from economics.payout_models import Payout, PayoutBatch
from economics.payout_selectors import visible_batches, visible_payouts
from economics.payouts import payout_batch_create, payout_batch_mark_paid
from partners.access import AnyUser


class BatchPermission(BasePermission):
    """Staff readers read batches; partner managers make and pay them."""

    message = "Only partner managers and sales ops read payout batches; only partner managers change them."

    def has_permission(self, request, view) -> bool:
        if not request.user.is_authenticated or not is_staff_reader(request):
            return False
        return request.method in SAFE_METHODS or can_write_all(request)


def batches_with_totals(user: AnyUser) -> QuerySet[PayoutBatch]:
    return (
        visible_batches(user)
        .annotate(
            amount=Sum("payouts__amount", default=0),
            carried_out=Sum("payouts__carried_out", default=0),
            payout_count=Count("payouts"),
        )
        .order_by("-month")
    )


@extend_schema_view(
    list=extend_schema(
        summary="List payout batches",
        description="One batch per month (docs/economics.md, Payouts). Partner managers and sales ops.",
        examples=[listed("A batch", ex.PAYOUT_BATCH)],
        responses={200: s.PayoutBatchSerializer(many=True), **errors(403, *READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="Get a payout batch",
        examples=[one("A batch", ex.PAYOUT_BATCH)],
        responses={200: s.PayoutBatchSerializer, **errors(403, *DETAIL_ERRORS)},
    ),
    create=extend_schema(
        summary="Make a month's payout batch",
        description=(
            "Settles every entry approved by the month's end, per partner, with the minimum payout and "
            "carried balances. Idempotent: a month that already has its batch answers 200 with it "
            "(201 when this call made it). Refused (400) for a month not begun, out of order, or while "
            "an earlier batch is open."
        ),
        request=s.PayoutBatchCreateSerializer,
        responses={
            201: s.PayoutBatchSerializer,
            200: s.PayoutBatchSerializer,
            **errors(*WRITE_ERRORS),
        },
        examples=[
            OpenApiExample("October", value={"month": "2026-10"}, request_only=True),
            OpenApiExample("Made", value=ex.PAYOUT_BATCH, response_only=True, status_codes=["201"]),
            OpenApiExample("Already made", value=ex.PAYOUT_BATCH, response_only=True, status_codes=["200"]),
        ],
    ),
    mark_paid=extend_schema(
        summary="Mark a payout batch paid",
        description=(
            "One transaction: payable payouts and the entries they settle become paid, and each paid "
            "payout is booked as a commission cost of its partner on `paid_on`. Marking a paid batch "
            "again changes nothing and answers the batch."
        ),
        request=s.MarkPaidSerializer,
        responses={200: s.PayoutBatchSerializer, **errors(404, *WRITE_ERRORS)},
        examples=[
            OpenApiExample("Paid", value={"paid_on": "2026-11-05"}, request_only=True),
            one(
                "The paid batch",
                {
                    **ex.PAYOUT_BATCH,
                    "status": "paid",
                    "paid_on": "2026-11-05",
                    "paid_at": "2026-11-05T10:00:00Z",
                },
            ),
        ],
    ),
)
@extend_schema(tags=["payouts"])
class PayoutBatchViewSet(ScopedViewSet):
    visible = staticmethod(batches_with_totals)
    queryset = PayoutBatch.objects.none()
    serializer_class = s.PayoutBatchSerializer
    permission_classes = [BatchPermission]
    ordering_fields = ["id", "month"]

    def _fresh(self, batch: PayoutBatch) -> PayoutBatch:
        return batches_with_totals(self.request.user).get(pk=batch.pk)

    def create(self, request: Request) -> Response:
        data = self.validated(s.PayoutBatchCreateSerializer)
        batch, created = payout_batch_create(month=data["month"], created_by=request.user)
        return self.output(
            self._fresh(batch), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @action(detail=True, methods=["post"], url_path="mark-paid")
    def mark_paid(self, request: Request, pk: str | None = None) -> Response:
        batch = self.get_object()
        data = self.validated(s.MarkPaidSerializer)
        paid, _ = payout_batch_mark_paid(batch=batch, paid_on=data["paid_on"], paid_by=request.user)
        return self.output(self._fresh(paid))


@extend_schema_view(
    list=extend_schema(
        summary="List payouts",
        description=(
            "One row per partner and monthly batch. Staff see all; a partner admin sees its own partner's; "
            "a partner member is refused (403)."
        ),
        parameters=[OpenApiParameter("batch", int, description="Only this batch's payouts.")],
        examples=[listed("A payout", ex.PAYOUT)],
        responses={200: s.PayoutSerializer(many=True), **errors(403, *READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="Get a payout",
        examples=[one("A payout", ex.PAYOUT)],
        responses={200: s.PayoutSerializer, **errors(403, *DETAIL_ERRORS)},
    ),
    statement=extend_schema(
        summary="Get a payout's statement",
        description="The payout with the ledger entries it settles: the partner's statement for the month.",
        examples=[one("A statement", ex.STATEMENT)],
        responses={200: s.StatementSerializer, **errors(403, *DETAIL_ERRORS)},
    ),
)
@extend_schema(tags=["payouts"])
class PayoutViewSet(ScopedViewSet):
    visible = staticmethod(visible_payouts)
    queryset = Payout.objects.none()
    serializer_class = s.PayoutSerializer
    permission_classes = [MoneyReader]
    ordering_fields = ["id", "amount"]

    def get_queryset(self) -> QuerySet[Payout]:
        qs = super().get_queryset()
        batch = self.request.query_params.get("batch") if self.request is not None else None
        if batch is not None and batch.isdigit():
            qs = qs.filter(batch_id=int(batch))
        return qs.order_by("-batch__month", "partner__name", "id")

    @action(detail=True, methods=["get"])
    def statement(self, request: Request, pk: str | None = None) -> Response:
        return Response(s.StatementSerializer(self.get_object()).data)
