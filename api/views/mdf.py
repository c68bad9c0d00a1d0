"""Market development funds: budgets (staff), requests and claims (partner admins submit their own,
partner managers decide), proof-file uploads (multipart). Partner members get 403; another
partner's request or claim is a 404 (docs/mdf.md)."""

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from api import mdf_serializers as s
from api.examples import listed, one
from api.permissions import acting_partner, acting_user, can_write_all, is_staff_reader
from api.schema import DETAIL_ERRORS, READ_ERRORS, WRITE_ERRORS, errors
from api.views.base import ScopedViewSet
from mdf import selectors, services
from mdf.models import MdfBudget, MdfClaim, MdfRequest
from partners import access

BUDGET = {
    "id": 4,
    "quarter": "2026-Q3",
    "starts_on": "2026-07-01",
    "ends_on": "2026-09-30",
    "partner": 12,
    "partner_name": "Northwind Consulting",
    "tier": "",
    "amount": "10000.00",
    "note": "",
    "pending": "3000.00",
    "approved_open": "2000.00",
    "claims_approved": "0.00",
    "reimbursed": "1200.00",
    "expired": "1000.00",
    "reserved": "6200.00",
    "remaining": "3800.00",
    "updated_at": "2026-06-20T09:00:00Z",
}
REQUEST = {
    "id": 31,
    "partner": 12,
    "partner_name": "Northwind Consulting",
    "budget": 4,
    "quarter": "2026-Q3",
    "activity_type": "event",
    "title": "Booth at Cloud Expo",
    "description": "Two days, 3x3 m booth.",
    "starts_on": "2026-09-10",
    "ends_on": "2026-09-11",
    "amount_requested": "2500.00",
    "expected_leads": 40,
    "status": "approved",
    "submitted_at": "2026-07-02T10:00:00Z",
    "amount_approved": "2000.00",
    "decided_at": "2026-07-03T08:00:00Z",
    "decision_comment": "Approved for the booth only.",
    "claim_deadline": "2026-11-10",
    "expired_at": None,
}
PROOF = {
    "id": 5,
    "claim": 9,
    "name": "invoice.pdf",
    "content_type": "application/pdf",
    "size": 48213,
    "uploaded_at": "2026-09-20T10:00:00Z",
    "url": "/mdf/files/5/",
}
CLAIM = {
    "id": 9,
    "request": 31,
    "partner": 12,
    "amount_claimed": "1950.00",
    "leads": 46,
    "summary": "46 scans.",
    "registrations": [311],
    "deals": [9001],
    "status": "approved",
    "submitted_at": "2026-09-20T10:00:00Z",
    "amount_approved": "1800.00",
    "decided_at": "2026-09-22T10:00:00Z",
    "decision_comment": "Travel excluded.",
    "reimbursed_on": None,
    "cost_entry": None,
    "files": [PROOF],
}


class MdfPermission(BasePermission):
    """Staff readers read all; partner admins read their own partner's rows and submit; partner
    managers decide. Partner members and anyone else: 403."""

    message = "Only partner managers, sales ops and partner admins use market development funds."
    STAFF_ONLY = False
    SUBMIT_ACTIONS = ("create", "files")

    def has_permission(self, request: Any, view: Any) -> bool:
        if not request.user.is_authenticated:
            return False
        staff = is_staff_reader(request)
        if not staff and not access.is_partner_admin(request.user):
            return False
        if self.STAFF_ONLY and not staff:
            self.message = "Only partner managers and sales ops see MDF budgets."
            return False
        if request.method in SAFE_METHODS or getattr(view, "detail", False):
            return True
        if view.action in self.SUBMIT_ACTIONS and not self.STAFF_ONLY:
            if acting_partner(request) is not None:
                return True
            self.message = "Partners submit their own requests and claims."
            return False
        return bool(can_write_all(request))

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        if view.action in self.SUBMIT_ACTIONS:
            return acting_partner(request) is not None
        self.message = "Only partner managers decide market development funds."
        return bool(can_write_all(request))


class BudgetPermission(MdfPermission):
    STAFF_ONLY = True


@extend_schema_view(
    list=extend_schema(
        summary="List MDF budgets",
        description="Staff only. Each budget with what its requests and claims hold and what is left.",
        responses={200: s.MdfBudgetSerializer(many=True), **errors(*READ_ERRORS, 403)},
        examples=[listed("A budget", BUDGET)],
    ),
    retrieve=extend_schema(
        summary="Get an MDF budget",
        responses={200: s.MdfBudgetSerializer, **errors(*DETAIL_ERRORS, 403)},
        examples=[one("A budget", BUDGET)],
    ),
    create=extend_schema(
        summary="Set an MDF budget",
        description="Partner managers only. Creates the quarter's budget of a partner (`partner`) or "
        "a tier's "
        "pool (`tier`), or changes its amount; never below what it already holds.",
        request=s.MdfBudgetInputSerializer,
        responses={201: s.MdfBudgetSerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Tier pool",
                value={"quarter": "2026-Q3", "tier": "Gold", "amount": "25000.00"},
                request_only=True,
            ),
            OpenApiExample("Set", value=BUDGET, response_only=True, status_codes=["201"]),
        ],
    ),
)
@extend_schema(tags=["mdf"])
class MdfBudgetViewSet(ScopedViewSet):
    visible = staticmethod(selectors.visible_budgets)
    select_related = ("partner",)
    queryset = MdfBudget.objects.none()
    serializer_class = s.MdfBudgetSerializer
    permission_classes = [BudgetPermission]
    filterset_class = None
    ordering_fields = ["id"]

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()).order_by("-starts_on", "id"))
        rows = list(page) if page is not None else []
        figures = {f.budget.pk: f for f in selectors.budget_figures(rows)}
        data = s.MdfBudgetSerializer(
            rows, many=True, context={**self.get_serializer_context(), "figures": figures}
        )
        return self.get_paginated_response(data.data)

    def create(self, request: Request) -> Response:
        data = self.validated(s.MdfBudgetInputSerializer)
        budget = services.budget_set(changed_by=acting_user(request), **data)
        return self.output(budget, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="List MDF requests",
        description="Staff see all; a partner admin its own partner's; partner members get 403.",
        responses={200: s.MdfRequestSerializer(many=True), **errors(*READ_ERRORS, 403)},
        examples=[listed("A request", REQUEST)],
    ),
    retrieve=extend_schema(
        summary="Get an MDF request",
        responses={200: s.MdfRequestSerializer, **errors(*DETAIL_ERRORS, 403)},
        examples=[one("A request", REQUEST)],
    ),
    create=extend_schema(
        summary="Request market development funds",
        description="Partner admins, for their own partner. The funds come from the budget of "
        "the quarter the "
        "activity starts in (the partner's own, else its tier's pool); above what it has left: 400.",
        request=s.MdfRequestInputSerializer,
        responses={201: s.MdfRequestSerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Event",
                value={
                    "activity_type": "event",
                    "title": "Booth at Cloud Expo",
                    "starts_on": "2026-09-10",
                    "ends_on": "2026-09-11",
                    "amount_requested": "2500.00",
                    "expected_leads": 40,
                },
                request_only=True,
            ),
            OpenApiExample(
                "Submitted",
                value={**REQUEST, "status": "submitted"},
                response_only=True,
                status_codes=["201"],
            ),
        ],
    ),
    approve=extend_schema(
        summary="Approve an MDF request",
        description="Partner managers only: all or part of the amount, and the claim deadline after which "
        "unclaimed funds expire.",
        request=s.MdfRequestApproveSerializer,
        responses={200: s.MdfRequestSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[
            OpenApiExample(
                "Approve part",
                value={"amount_approved": "2000.00", "claim_deadline": "2026-11-10"},
                request_only=True,
            ),
            OpenApiExample("Approved", value=REQUEST, response_only=True),
        ],
    ),
    reject=extend_schema(
        summary="Reject an MDF request",
        request=s.MdfCommentSerializer,
        responses={200: s.MdfRequestSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[
            OpenApiExample("Reject", value={"comment": "Outside our target market."}, request_only=True),
            OpenApiExample("Rejected", value={**REQUEST, "status": "rejected"}, response_only=True),
        ],
    ),
    claim_deadline=extend_schema(
        summary="Move an approved MDF request's claim deadline",
        request=s.MdfDeadlineSerializer,
        responses={200: s.MdfRequestSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[
            OpenApiExample("Later", value={"claim_deadline": "2026-12-15"}, request_only=True),
            OpenApiExample("Moved", value=REQUEST, response_only=True),
        ],
    ),
)
@extend_schema(tags=["mdf"])
class MdfRequestViewSet(ScopedViewSet):
    visible = staticmethod(selectors.visible_requests)
    select_related = ("partner", "budget")
    queryset = MdfRequest.objects.none()
    serializer_class = s.MdfRequestSerializer
    permission_classes = [MdfPermission]
    filterset_fields = ["status", "activity_type"]
    ordering_fields = ["id"]

    def create(self, request: Request) -> Response:
        partner = acting_partner(request)
        data = self.validated(s.MdfRequestInputSerializer)
        created = services.request_submit(partner=partner, submitted_by=acting_user(request), **data)
        return self.output(created, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        row = self.get_object()
        data = self.validated(s.MdfRequestApproveSerializer)
        return self.output(
            services.request_decide(request=row, decided_by=acting_user(request), approve=True, **data)
        )

    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        row = self.get_object()
        data = self.validated(s.MdfCommentSerializer)
        return self.output(
            services.request_decide(request=row, decided_by=acting_user(request), approve=False, **data)
        )

    @action(detail=True, methods=["post"], url_path="claim-deadline")
    def claim_deadline(self, request: Request, pk: str | None = None) -> Response:
        row = self.get_object()
        data = self.validated(s.MdfDeadlineSerializer)
        return self.output(
            services.request_set_claim_deadline(request=row, changed_by=acting_user(request), **data)
        )


@extend_schema_view(
    list=extend_schema(
        summary="List MDF claims",
        description="Staff see all; a partner admin its own partner's; partner members get 403.",
        responses={200: s.MdfClaimSerializer(many=True), **errors(*READ_ERRORS, 403)},
        examples=[listed("A claim", CLAIM)],
    ),
    retrieve=extend_schema(
        summary="Get an MDF claim",
        responses={200: s.MdfClaimSerializer, **errors(*DETAIL_ERRORS, 403)},
        examples=[one("A claim", CLAIM)],
    ),
    create=extend_schema(
        summary="Claim the funds of an approved MDF request",
        description="Partner admins, once the activity has ended and by its claim deadline: the amount spent "
        "(at most the approved amount), the leads, and the partner's own registrations and deals "
        "it produced. "
        "Add the proof files with `files`; a claim without one cannot be approved.",
        request=s.MdfClaimInputSerializer,
        responses={201: s.MdfClaimSerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Claim",
                value={
                    "request": 31,
                    "amount_claimed": "1950.00",
                    "leads": 46,
                    "registrations": [311],
                    "deals": [],
                },
                request_only=True,
            ),
            OpenApiExample(
                "Submitted",
                value={**CLAIM, "status": "submitted", "files": []},
                response_only=True,
                status_codes=["201"],
            ),
        ],
    ),
    files=extend_schema(
        summary="Upload a proof-of-performance file to an MDF claim",
        description="multipart/form-data with `file`: PDF, PNG, JPEG or WebP, checked by its content, "
        "at most "
        "MDF_PROOF_MAX_BYTES; only while the claim is in review.",
        request={"multipart/form-data": s.MdfProofUploadSerializer},
        responses={201: s.MdfProofFileSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[OpenApiExample("Uploaded", value=PROOF, response_only=True, status_codes=["201"])],
    ),
    approve=extend_schema(
        summary="Approve an MDF claim (all or part)",
        request=s.MdfClaimApproveSerializer,
        responses={200: s.MdfClaimSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[
            OpenApiExample(
                "Partial",
                value={"amount_approved": "1800.00", "comment": "Travel excluded."},
                request_only=True,
            ),
            OpenApiExample("Approved", value=CLAIM, response_only=True),
        ],
    ),
    reject=extend_schema(
        summary="Reject an MDF claim",
        request=s.MdfCommentSerializer,
        responses={200: s.MdfClaimSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[
            OpenApiExample("Reject", value={"comment": "The invoice is not readable."}, request_only=True),
            OpenApiExample("Rejected", value={**CLAIM, "status": "rejected"}, response_only=True),
        ],
    ),
    reimburse=extend_schema(
        summary="Reimburse an approved MDF claim",
        description="Partner managers only. Books the approved amount as an MDF cost of the partner "
        "(linked to "
        "the claim's deals and registrations) in the same transaction; "
        "again on a reimbursed claim: unchanged.",
        request=None,
        responses={200: s.MdfClaimSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[
            OpenApiExample(
                "Reimbursed",
                value={**CLAIM, "status": "reimbursed", "reimbursed_on": "2026-10-01", "cost_entry": 77},
                response_only=True,
            )
        ],
    ),
)
@extend_schema(tags=["mdf"])
class MdfClaimViewSet(ScopedViewSet):
    visible = staticmethod(selectors.visible_claims)
    select_related = ("request__partner",)
    queryset = MdfClaim.objects.none()
    serializer_class = s.MdfClaimSerializer
    permission_classes = [MdfPermission]
    filterset_fields = ["status"]
    ordering_fields = ["id"]

    def get_queryset(self) -> Any:
        return super().get_queryset().prefetch_related("files", "registrations", "deals")

    def create(self, request: Request) -> Response:
        data = self.validated(s.MdfClaimInputSerializer)
        funds_request = selectors.visible_requests(request.user).filter(pk=data.pop("request")).first()
        if funds_request is None:
            raise ValidationError({"request": ["no such request of yours"]})
        claim = services.claim_submit(
            request=funds_request,
            submitted_by=acting_user(request),
            amount_claimed=data["amount_claimed"],
            leads=data["leads"],
            summary=data["summary"],
            registration_ids=data["registrations"],
            deal_ids=data["deals"],
        )
        return self.output(claim, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser])
    def files(self, request: Request, pk: str | None = None) -> Response:
        claim = self.get_object()
        data = self.validated(s.MdfProofUploadSerializer)
        proof = services.proof_add(claim=claim, upload=data["file"], uploaded_by=acting_user(request))
        return Response(s.MdfProofFileSerializer(proof).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        claim = self.get_object()
        data = self.validated(s.MdfClaimApproveSerializer)
        return self.output(
            services.claim_decide(claim=claim, decided_by=acting_user(request), approve=True, **data)
        )

    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        claim = self.get_object()
        data = self.validated(s.MdfCommentSerializer)
        return self.output(
            services.claim_decide(claim=claim, decided_by=acting_user(request), approve=False, **data)
        )

    @action(detail=True, methods=["post"])
    def reimburse(self, request: Request, pk: str | None = None) -> Response:
        claim = self.get_object()
        done = services.claim_reimburse(claim=claim, reimbursed_by=acting_user(request))
        return self.output(MdfClaim.objects.prefetch_related("files").get(pk=done.pk))
