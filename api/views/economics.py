"""Commission plans (staff read, partner managers write) and the commission ledger (staff and
partner admins read their scope; partner managers approve and decline). docs/economics.md."""

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from api import economics_serializers as s
from api.idempotency import IdempotentPostMixin
from api.pagination import StandardPagination
from api.permissions import MoneyReader, acting_user, can_write_all, is_staff_reader
from api.schema import errors
from api.throttling import WRITE_SCOPE, WriteThrottle
from economics import selectors, services
from economics.models import CommissionEntry, CommissionPlan

PLAN_EXAMPLE = {
    "id": 3,
    "key": "resellers-2026",
    "name": "Resellers 2026",
    "description": "",
    "priority": 10,
    "effective_from": "2026-01-01",
    "effective_to": None,
    "is_active": True,
    "tiers": ["gold"],
    "partner_types": ["reseller"],
    "join_sources": [],
    "partners": [],
    "rules": [
        {
            "id": 7,
            "key": None,
            "kind": "percent_sourced",
            "rate": "10.0000",
            "amount": None,
            "cap": "5000.00",
        },
        {"id": 8, "key": None, "kind": "fixed_registration", "rate": None, "amount": "25.00", "cap": None},
    ],
    "created_at": "2026-01-02T09:00:00Z",
    "updated_at": "2026-01-02T09:00:00Z",
}
PLAN_INPUT = {
    "name": "Resellers 2026",
    "priority": 10,
    "effective_from": "2026-01-01",
    "tiers": ["gold"],
    "partner_types": ["reseller"],
    "rules": [
        {"kind": "percent_sourced", "rate": "10", "cap": "5000.00"},
        {"kind": "fixed_registration", "amount": "25.00"},
    ],
}
ENTRY_EXAMPLE = {
    "id": 41,
    "partner": 12,
    "partner_name": "Northwind",
    "plan": 3,
    "rule": 7,
    "rule_kind": "percent_sourced",
    "basis": "revenue",
    "kind": "earning",
    "sequence": 0,
    "deal": 9001,
    "registration": None,
    "amount": "120.00",
    "base_amount": "1200.00",
    "rate": "10.0000",
    "fixed_amount": None,
    "cap": "5000.00",
    "earned_at": "2026-03-10T15:00:00Z",
    "hold_until": "2026-04-09T15:00:00Z",
    "status": "pending",
    "decided_at": None,
    "decided_by": None,
    "decline_reason": "",
    "paid_at": None,
    "created_at": "2026-03-10T15:01:00Z",
}
REVIEW_EXAMPLE = {"decided": [41, 42], "on_hold": [43], "not_pending": [], "not_found": []}


class PlanPermission(BasePermission):
    message = "Only partner managers and sales ops see commission plans; only partner managers change them."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user.is_authenticated:
            return False
        return is_staff_reader(request) if request.method in SAFE_METHODS else can_write_all(request)


class EntryPermission(MoneyReader):
    """The ledger's entries: money readers (staff readers and partner admins) read them; a partner
    member gets 403; only partner managers decide them."""

    message = "Commissions are shown to staff and partner admins only."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.user.is_authenticated and request.method not in SAFE_METHODS:
            self.message = "Only partner managers approve or decline commissions."
            return can_write_all(request)
        return super().has_permission(request, view)


@extend_schema_view(
    list=extend_schema(
        summary="List commission plans",
        tags=["economics"],
        responses={200: s.CommissionPlanSerializer(many=True), **errors(403, 404)},
        examples=[OpenApiExample("A plan", value=[PLAN_EXAMPLE], response_only=True)],
    ),
    retrieve=extend_schema(
        summary="Get a commission plan",
        tags=["economics"],
        responses={200: s.CommissionPlanSerializer, **errors(403, 404)},
        examples=[OpenApiExample("A plan", value=PLAN_EXAMPLE, response_only=True)],
    ),
    create=extend_schema(
        summary="Create a commission plan with its rules",
        tags=["economics"],
        description="Partner managers only. Empty tiers/partner_types/join_sources/partners match every "
        "partner; a partner must match each one that is set. Precedence: docs/economics.md.",
        request=s.CommissionPlanInputSerializer,
        responses={201: s.CommissionPlanSerializer, **errors(400, 403, 429)},
        examples=[
            OpenApiExample("Plan", value=PLAN_INPUT, request_only=True),
            OpenApiExample("Created", value=PLAN_EXAMPLE, response_only=True, status_codes=["201"]),
        ],
    ),
    partial_update=extend_schema(
        summary="Change a commission plan",
        tags=["economics"],
        description="Only the fields sent change. `rules`, when sent, is the whole list: items with an "
        "`id` change that rule, items without add one, rules left out are removed (refused for a rule "
        "with ledger entries). Approved, paid and declined entries keep their terms.",
        request=s.CommissionPlanUpdateSerializer,
        responses={200: s.CommissionPlanSerializer, **errors(400, 403, 404, 429)},
        examples=[
            OpenApiExample("End the plan", value={"effective_to": "2026-12-31"}, request_only=True),
            OpenApiExample("Changed", value=PLAN_EXAMPLE, response_only=True),
        ],
    ),
)
class CommissionPlanViewSet(
    IdempotentPostMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    permission_classes = [PlanPermission]
    throttle_classes = [WriteThrottle]
    throttle_scope = WRITE_SCOPE
    serializer_class = s.CommissionPlanSerializer
    pagination_class = StandardPagination
    filter_backends: list[Any] = []
    lookup_value_regex = "[0-9]{1,18}"
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[CommissionPlan]:
        if getattr(self, "swagger_fake_view", False):
            return CommissionPlan.objects.none()
        return selectors.visible_plans(self.request.user).order_by("-priority", "name", "id")

    def _input(self, serializer_class: type[s.CommissionPlanInputSerializer]) -> dict[str, Any]:
        if not isinstance(self.request.data, dict):
            raise ValidationError({"non_field_errors": ["The body must be a JSON object."]})
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def _save(self, plan: CommissionPlan, data: dict[str, Any]) -> CommissionPlan:
        acting_user(self.request)
        relations = {name: data.pop(name, None) for name in ("join_sources", "partners", "rules")}
        for name, value in data.items():
            setattr(plan, name, value)
        rules = relations["rules"]
        return services.plan_save(
            plan=plan,
            join_sources=relations["join_sources"],
            partners=relations["partners"],
            rules=None if rules is None else [dict(r) for r in rules],
        )

    def create(self, request: Request) -> Response:
        plan = self._save(CommissionPlan(), self._input(s.CommissionPlanInputSerializer))
        return Response(s.CommissionPlanSerializer(plan).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        data = self._input(s.CommissionPlanUpdateSerializer)
        plan = self._save(self.get_object(), data)
        return Response(s.CommissionPlanSerializer(self.get_queryset().get(pk=plan.pk)).data)


@extend_schema_view(
    list=extend_schema(
        summary="List commission ledger entries",
        tags=["economics"],
        description="Staff see every entry; a partner admin its own partner's; a partner member gets 403. "
        "Filters: status, kind, basis, partner, plan, earned_from/earned_to (dates in the program's time "
        "zone), hold=ready|held.",
        parameters=[s.CommissionEntryQuerySerializer],
        responses={200: s.CommissionEntrySerializer(many=True), **errors(400, 403, 404)},
        examples=[OpenApiExample("An entry", value=[ENTRY_EXAMPLE], response_only=True)],
    ),
    retrieve=extend_schema(
        summary="Get a commission ledger entry",
        tags=["economics"],
        responses={200: s.CommissionEntrySerializer, **errors(403, 404)},
        examples=[OpenApiExample("An entry", value=ENTRY_EXAMPLE, response_only=True)],
    ),
)
class CommissionEntryViewSet(
    IdempotentPostMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    permission_classes = [EntryPermission]
    throttle_classes = [WriteThrottle]
    throttle_scope = WRITE_SCOPE
    serializer_class = s.CommissionEntrySerializer
    pagination_class = StandardPagination
    filter_backends: list[Any] = []
    lookup_value_regex = "[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[CommissionEntry]:
        if getattr(self, "swagger_fake_view", False):
            return CommissionEntry.objects.none()
        qs = selectors.visible_entries(self.request.user).select_related("partner", "rule")
        if self.action == "list":
            query = s.CommissionEntryQuerySerializer(data=self.request.query_params)
            query.is_valid(raise_exception=True)
            v = query.validated_data
            qs = selectors.filter_entries(
                qs,
                selectors.EntryFilter(
                    status=v.get("status", ""),
                    kind=v.get("kind", ""),
                    basis=v.get("basis", ""),
                    partner_id=v.get("partner"),
                    plan_id=v.get("plan"),
                    earned_from=v.get("earned_from"),
                    earned_to=v.get("earned_to"),
                    hold=v.get("hold", ""),
                ),
            )
        return qs.order_by("-earned_at", "-id")

    def _review(self, decide: str) -> Response:
        user = acting_user(self.request)
        if not isinstance(self.request.data, dict):
            raise ValidationError({"non_field_errors": ["The body must be a JSON object."]})
        body = s.ReviewInputSerializer(data=self.request.data)
        body.is_valid(raise_exception=True)
        ids = set(body.validated_data["ids"])
        with transaction.atomic():
            if decide == "approve":
                result = services.entries_approve(entry_ids=ids, by=user)
            else:
                result = services.entries_decline(
                    entry_ids=ids, reason=body.validated_data.get("reason", ""), by=user
                )
        seen = set(result.decided) | set(result.on_hold) | set(result.not_pending)
        data = {**vars(result), "not_found": sorted(ids - seen)}
        return Response(s.ReviewResultSerializer(data).data)

    @extend_schema(
        summary="Approve commission entries (bulk)",
        tags=["economics"],
        description="Partner managers only. Approves the pending entries among `ids` whose hold period "
        "has ended; the answer lists those approved, those still on hold, those already decided and "
        "ids that do not exist.",
        request=s.ReviewInputSerializer,
        responses={200: s.ReviewResultSerializer, **errors(400, 403, 429)},
        examples=[
            OpenApiExample("Approve", value={"ids": [41, 42, 43]}, request_only=True),
            OpenApiExample("Result", value=REVIEW_EXAMPLE, response_only=True),
        ],
    )
    @action(detail=False, methods=["post"])
    def approve(self, request: Request) -> Response:
        return self._review("approve")

    @extend_schema(
        summary="Decline commission entries (bulk)",
        tags=["economics"],
        description="Partner managers only. Declines the pending entries among `ids` with the `reason` "
        "(required); a declined entry is never paid and is not created again by the ledger build.",
        request=s.ReviewInputSerializer,
        responses={200: s.ReviewResultSerializer, **errors(400, 403, 429)},
        examples=[
            OpenApiExample("Decline", value={"ids": [41], "reason": "Duplicate deal"}, request_only=True),
            OpenApiExample(
                "Result",
                value={"decided": [41], "on_hold": [], "not_pending": [], "not_found": []},
                response_only=True,
            ),
        ],
    )
    @action(detail=False, methods=["post"])
    def decline(self, request: Request) -> Response:
        return self._review("decline")
