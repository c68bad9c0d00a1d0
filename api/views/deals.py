"""Accounts, deal registrations (with the review workflow), deals and touches."""

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api import examples as ex
from api import serializers as s
from api.examples import listed, one
from api.exceptions import Conflict
from api.filters import AccountFilterSet, DealFilterSet, RegistrationFilterSet, TouchFilterSet
from api.permissions import RegistrationPermission, acting_partner, acting_user, is_staff_reader
from api.schema import DETAIL_ERRORS, READ_ERRORS, WRITE_ERRORS, conflict_response, errors
from api.views.base import BigTableViewSet
from api.views.bulk import bulk_action
from deals import selectors, services
from deals.models import Account, Deal, DealRegistration, Touch
from deals.rules import normalise_domain
from deals.selectors import visible_accounts, visible_deals, visible_registrations, visible_touches
from partners import access

# What a partner user may never choose when submitting: the partner and any decision.
PARTNER_FORBIDDEN_FIELDS = (
    "partner",
    "status",
    "decided_at",
    "decided_by",
    "decision_reason",
    "conflict_with",
    "conflict_override_reason",
    "deal",
    "sourcing_partner",
    "protection_expires_at",
    "submitted_by",
)


@extend_schema_view(
    list=extend_schema(
        summary="List customer accounts",
        examples=[listed("An account", ex.ACCOUNT)],
        description="Staff see all; a partner user sees the accounts behind its own deals and registrations.",
        responses={200: s.AccountSerializer(many=True), **errors(*READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="Get an account",
        examples=[one("An account", ex.ACCOUNT)],
        responses={200: s.AccountSerializer, **errors(*DETAIL_ERRORS)},
    ),
    create=extend_schema(
        summary="Find or create an account",
        description="Partner managers only. When `domain` matches an existing account (after normalising), "
        "that account is returned instead of a duplicate.",
        request=s.AccountInputSerializer,
        responses={201: s.AccountSerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Account", value={"name": "Acme Corp", "domain": "https://www.acme.com/"}, request_only=True
            )
        ],
    ),
)
@extend_schema(tags=["deals"])
class AccountViewSet(BigTableViewSet):
    visible = staticmethod(visible_accounts)
    queryset = Account.objects.none()
    serializer_class = s.AccountSerializer
    filterset_class = AccountFilterSet
    ordering_fields = ["id"]

    bulk = bulk_action("accounts")

    def create(self, request):
        account = services.account_get_or_create(**self.validated(s.AccountInputSerializer))
        return self.output(account, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        summary="List deal registrations",
        description="Staff see all; a partner user sees only its own partner's registrations.",
        responses={200: s.RegistrationSerializer(many=True), **errors(*READ_ERRORS)},
        examples=[OpenApiExample("A registration", value=[ex.REGISTRATION], response_only=True)],
    ),
    retrieve=extend_schema(
        summary="Get a deal registration",
        examples=[one("A registration", ex.REGISTRATION)],
        responses={200: s.RegistrationSerializer, **errors(*DETAIL_ERRORS)},
    ),
    create=extend_schema(
        summary="Submit a deal registration",
        description=(
            "Partner users submit for their own partner: the partner comes from the login, and a body "
            "naming a partner, a status, a decision or a sourcing partner is refused (400). Partner managers "
            "submit on a partner's behalf and must give `partner`. When another partner holds a protected "
            "claim on the same domain the registration is still created, flagged with `conflict_with`."
        ),
        request=s.RegistrationSubmitOnBehalfSerializer,
        responses={201: s.RegistrationSerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Partner user",
                value={
                    "account_name": "Acme Corp",
                    "domain": "acme.com",
                    "amount": "18000.00",
                    "expected_close_date": "2026-06-30",
                    "notes": "Champion is the CFO.",
                },
                request_only=True,
            ),
            OpenApiExample("Submitted", value=ex.REGISTRATION, response_only=True, status_codes=["201"]),
        ],
    ),
    approve=extend_schema(
        summary="Approve a registration (creates its deal)",
        description=(
            "Partner managers only. Converts the registration into an open deal sourced by the partner. "
            "A registration in channel conflict needs `override_reason` (or use `override`); without it the "
            "answer is 409 with the conflicting registration."
        ),
        request=s.RegistrationApproveInputSerializer,
        responses={
            200: s.RegistrationSerializer,
            409: conflict_response(s.RegistrationSerializer),
            **errors(*WRITE_ERRORS, 404),
        },
        examples=[OpenApiExample("Approve", value={"reason": "Qualified by the AE"}, request_only=True)],
    ),
    override=extend_schema(
        summary="Approve a registration despite a channel conflict",
        description="Partner managers only. The override reason is kept with the decision for audit.",
        request=s.RegistrationOverrideInputSerializer,
        responses={200: s.RegistrationSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[
            OpenApiExample(
                "Override",
                value={"override_reason": "The other partner's contact left the customer"},
                request_only=True,
            )
        ],
    ),
    reject=extend_schema(
        summary="Reject a registration",
        description="Partner managers only; the reason is required and shown to the partner.",
        request=s.RegistrationRejectInputSerializer,
        responses={200: s.RegistrationSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[
            OpenApiExample("Reject", value={"reason": "Existing direct opportunity"}, request_only=True)
        ],
    ),
    conflicts=extend_schema(
        summary="Check a domain for other partners' protected claims",
        description=(
            "For the portal's duplicate warning before submitting. Partner users learn only whether a "
            "claim exists and until when; staff also get the claims (`partner` = whose perspective)."
        ),
        parameters=[
            OpenApiParameter("domain", OpenApiTypes.STR, required=True, description="Domain, URL or email."),
            OpenApiParameter(
                "partner",
                OpenApiTypes.INT,
                description="Staff: check as this partner (default: any partner).",
            ),
        ],
        responses={200: s.ConflictCheckSerializer, **errors(400)},
        examples=[
            OpenApiExample(
                "Claimed",
                value={
                    "domain": "acme.com",
                    "has_conflict": True,
                    "protected_until": "2026-05-31T09:15:00Z",
                    "conflicts": [],
                },
                response_only=True,
            )
        ],
    ),
)
@extend_schema(tags=["registrations"])
class RegistrationViewSet(BigTableViewSet):
    visible = staticmethod(visible_registrations)
    select_related = ("partner", "account")
    queryset = DealRegistration.objects.none()
    serializer_class = s.RegistrationSerializer
    filterset_class = RegistrationFilterSet
    permission_classes = [RegistrationPermission]
    ordering_fields = ["id", "submitted_at", "updated_at"]

    def get_serializer_class(self):
        inspecting = getattr(self, "swagger_fake_view", False) or self.request is None
        if not inspecting and not is_staff_reader(self.request):
            return s.PartnerRegistrationSerializer
        return super().get_serializer_class()

    bulk = bulk_action("registrations")

    def create(self, request):
        partner = acting_partner(request)
        if partner is not None:
            forbidden = [f for f in PARTNER_FORBIDDEN_FIELDS if f in self.body_object()]
            if forbidden:
                message = "Set by the program, never by a partner: leave it out."
                raise drf_serializers.ValidationError({f: [message] for f in forbidden})
            data = self.validated(s.RegistrationSubmitSerializer)
        else:
            data = self.validated(s.RegistrationSubmitOnBehalfSerializer)
            partner = data.pop("partner")
        registration = services.registration_submit(partner=partner, submitted_by=request.user, **data)
        return self.output(registration, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        registration = self.get_object()
        data = self.validated(s.RegistrationApproveInputSerializer)
        return self._approve(request, registration, **data)

    @action(detail=True, methods=["post"])
    def override(self, request, pk=None):
        registration = self.get_object()
        data = self.validated(s.RegistrationOverrideInputSerializer)
        return self._approve(request, registration, **data)

    def _approve(
        self, request: Request, registration: DealRegistration, *, reason: str, override_reason: str
    ) -> Response:
        try:
            approved = services.registration_approve(
                registration=registration,
                decided_by=acting_user(request),
                reason=reason,
                override_reason=override_reason,
            )
        except ValidationError as exc:
            conflict = self._conflict_of(registration, exc)
            if conflict is None:
                raise
            raise Conflict(
                " ".join(exc.message_dict.get("override_reason", [])) or Conflict.default_detail,
                extra={"conflict": s.RegistrationSerializer(conflict).data},
            ) from exc
        return self.output(approved)

    @staticmethod
    def _conflict_of(registration: DealRegistration, exc: ValidationError) -> DealRegistration | None:
        """The claim an approval was refused for, when a channel conflict is why it was refused."""
        if not hasattr(exc, "error_dict") or "override_reason" not in exc.error_dict:
            return None
        registration.refresh_from_db()
        return selectors.registration_blocking_claims(registration=registration).first()

    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        registration = self.get_object()
        data = self.validated(s.RegistrationRejectInputSerializer)
        return self.output(
            services.registration_reject(
                registration=registration, decided_by=request.user, reason=data["reason"]
            )
        )

    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def conflicts(self, request):
        query = s.ConflictQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        domain = normalise_domain(query.validated_data["domain"])
        partner = acting_partner(request)
        staff = is_staff_reader(request)
        if partner is None and staff:
            partner_id = query.validated_data.get("partner")
            partner = (
                access.visible_partners(request.user).filter(pk=partner_id).first() if partner_id else None
            )
        claims = list(
            selectors.registration_conflicts(partner=partner, domain=domain).select_related(
                "partner", "account"
            )
            if (partner is not None or staff)
            else []
        )
        protected = [c.protection_expires_at for c in claims if c.protection_expires_at]
        body = {
            "domain": domain,
            "has_conflict": bool(claims),
            "protected_until": max(protected) if protected else None,
            "conflicts": claims if staff else [],
        }
        return Response(s.ConflictCheckSerializer(body).data)


@extend_schema_view(
    list=extend_schema(
        summary="List deals",
        description="Staff see all; a partner user sees the deals it sourced, touched or registered.",
        responses={200: s.DealSerializer(many=True), **errors(*READ_ERRORS)},
        examples=[OpenApiExample("A deal", value=[ex.DEAL], response_only=True)],
    ),
    retrieve=extend_schema(
        summary="Get a deal",
        examples=[one("A deal", ex.DEAL)],
        responses={200: s.DealSerializer, **errors(*DETAIL_ERRORS)},
    ),
    create=extend_schema(
        summary="Create a deal",
        description="Partner managers only. Won and lost deals need `closed_at`; the amount must be "
        "positive.",
        request=s.DealInputSerializer,
        responses={201: s.DealSerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Open deal",
                value={
                    "account": 2045,
                    "name": "Acme rollout",
                    "amount": "18000.00",
                    "created_at": "2026-03-10T12:00:00Z",
                },
                request_only=True,
            )
        ],
    ),
    partial_update=extend_schema(
        summary="Change a deal",
        description="Partner managers only; only the fields sent change. Close a deal with `close`.",
        request=s.DealUpdateInputSerializer,
        responses={200: s.DealSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[OpenApiExample("New amount", value={"amount": "21000.00"}, request_only=True)],
    ),
    close=extend_schema(
        summary="Close a deal as won or lost",
        request=s.DealCloseInputSerializer,
        responses={200: s.DealSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[
            OpenApiExample(
                "Won", value={"status": "won", "closed_at": "2026-05-20T16:30:00Z"}, request_only=True
            )
        ],
    ),
)
@extend_schema(tags=["deals"])
class DealViewSet(BigTableViewSet):
    visible = staticmethod(visible_deals)
    select_related = ("account",)
    queryset = Deal.objects.none()
    serializer_class = s.DealSerializer
    filterset_class = DealFilterSet
    ordering_fields = ["id", "created_at", "updated_at"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_serializer_class(self):
        if getattr(self, "swagger_fake_view", False) or self.request is None:
            return super().get_serializer_class()
        return s.PartnerDealSerializer if acting_partner(self.request) else s.DealSerializer

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "partner": acting_partner(self.request)}

    bulk = bulk_action("deals")

    def create(self, request):
        deal = services.deal_create(**self.validated(s.DealInputSerializer))
        return self.output(deal, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        deal = self.get_object()
        fields = self.validated(s.DealUpdateInputSerializer, deal=deal)
        return self.output(services.deal_update(deal=deal, **fields))

    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        deal = self.get_object()
        data = self.validated(s.DealCloseInputSerializer)
        return self.output(services.deal_close(deal=deal, status=data["status"], closed_at=data["closed_at"]))


@extend_schema_view(
    list=extend_schema(
        summary="List touches",
        examples=[listed("A touch", ex.TOUCH)],
        description="Staff see all; a partner user sees only its own touches (never another partner's).",
        responses={200: s.TouchSerializer(many=True), **errors(*READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="Get a touch",
        examples=[one("A touch", ex.TOUCH)],
        responses={200: s.TouchSerializer, **errors(*DETAIL_ERRORS)},
    ),
    create=extend_schema(
        summary="Record a partner touch on a deal",
        request=s.TouchInputSerializer,
        responses={201: s.TouchSerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Co-selling meeting",
                value={"deal": 9001, "partner": 12, "kind": "co_sell", "touched_at": "2026-04-02T15:00:00Z"},
                request_only=True,
            )
        ],
    ),
)
@extend_schema(tags=["deals"])
class TouchViewSet(BigTableViewSet):
    visible = staticmethod(visible_touches)
    queryset = Touch.objects.none()
    serializer_class = s.TouchSerializer
    filterset_class = TouchFilterSet
    ordering_fields = ["id", "touched_at"]

    bulk = bulk_action("touches")

    def create(self, request):
        touch = services.touch_add(**self.validated(s.TouchInputSerializer))
        return self.output(touch, status=status.HTTP_201_CREATED)
