"""Join sources, partners and partner users."""

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action

from api import examples as ex
from api import serializers as s
from api.examples import listed, one
from api.filters import JoinSourceFilterSet, PartnerFilterSet, PartnerUserFilterSet
from api.schema import DETAIL_ERRORS, READ_ERRORS, WRITE_ERRORS, errors
from api.views.base import ScopedViewSet
from partners import access, services
from partners.models import JoinSource, Partner, PartnerUser


def visible_join_sources(user):
    """Staff see every source; a partner user sees only the source its own partner joined through."""
    if access.is_staff_reader(user):
        return JoinSource.objects.all()
    return JoinSource.objects.filter(pk__in=access.visible_partners(user).values("join_source_id"))


def visible_partner_users(user):
    return PartnerUser.objects.filter(partner__in=access.visible_partners(user).values("pk"))


@extend_schema_view(
    list=extend_schema(
        summary="List join sources",
        examples=[listed("A join source", ex.JOIN_SOURCE)],
        responses={200: s.JoinSourceSerializer(many=True), **errors()},
    ),
    retrieve=extend_schema(
        summary="Get a join source",
        examples=[one("A join source", ex.JOIN_SOURCE)],
        responses={200: s.JoinSourceSerializer, **errors(404)},
    ),
)
@extend_schema(tags=["partners"])
class JoinSourceViewSet(ScopedViewSet):
    """The channels partners apply through. Read-only here: sources come from imports and the admin."""

    visible = staticmethod(visible_join_sources)
    queryset = JoinSource.objects.none()
    serializer_class = s.JoinSourceSerializer
    filterset_class = JoinSourceFilterSet
    ordering_fields = ["name", "id"]


@extend_schema_view(
    list=extend_schema(
        summary="List partners",
        description="Staff see every partner (applications included); a partner user sees only its own.",
        responses={200: s.PartnerSerializer(many=True), **errors(*READ_ERRORS)},
        examples=[OpenApiExample("A partner", value=[ex.PARTNER], response_only=True)],
    ),
    retrieve=extend_schema(
        summary="Get a partner",
        examples=[one("A partner", ex.PARTNER)],
        responses={200: s.PartnerSerializer, **errors(*DETAIL_ERRORS)},
    ),
    create=extend_schema(
        summary="Record a partner application",
        description="Partner managers only. The partner starts as `applied`; approve it to make it a "
        "partner.",
        request=s.PartnerInputSerializer,
        responses={201: s.PartnerSerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Application",
                value={
                    "key": "P-0012",
                    "name": "Northwind Consulting",
                    "type": "reseller",
                    "join_source": 3,
                    "applied_at": "2026-01-05",
                    "tier": "gold",
                },
                request_only=True,
            )
        ],
    ),
    approve=extend_schema(
        summary="Approve a partner application",
        description="Partner managers only. `joined_at` defaults to today in the program time zone.",
        request=s.PartnerApproveInputSerializer,
        responses={200: s.PartnerSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[OpenApiExample("Approve", value={"joined_at": "2026-01-19"}, request_only=True)],
    ),
    reject=extend_schema(
        summary="Reject a partner application",
        examples=[one("Rejected", {**ex.PARTNER, "status": "rejected", "joined_at": None})],
        request=None,
        responses={200: s.PartnerSerializer, **errors(*WRITE_ERRORS, 404)},
    ),
    set_status=extend_schema(
        summary="Change a partner's lifecycle status",
        description="Partner managers only: active, inactive or churned (the partner must have joined).",
        request=s.PartnerStatusInputSerializer,
        responses={200: s.PartnerSerializer, **errors(*WRITE_ERRORS, 404)},
        examples=[OpenApiExample("Churned", value={"status": "churned"}, request_only=True)],
    ),
)
@extend_schema(tags=["partners"])
class PartnerViewSet(ScopedViewSet):
    visible = staticmethod(access.visible_partners)
    select_related = ("join_source",)
    queryset = Partner.objects.none()
    serializer_class = s.PartnerSerializer
    filterset_class = PartnerFilterSet
    ordering_fields = ["name", "id", "applied_at", "joined_at", "updated_at"]

    def create(self, request):
        data = self.validated(s.PartnerInputSerializer)
        partner = services.partner_apply(**data)
        return self.output(partner, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        data = self.validated(s.PartnerApproveInputSerializer)
        return self.output(services.partner_approve(partner=self.get_object(), joined_at=data["joined_at"]))

    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self.output(services.partner_reject(partner=self.get_object()))

    @action(detail=True, methods=["post"], url_path="status")
    def set_status(self, request, pk=None):
        data = self.validated(s.PartnerStatusInputSerializer)
        return self.output(services.partner_set_status(partner=self.get_object(), status=data["status"]))


@extend_schema_view(
    list=extend_schema(
        summary="List partner users",
        examples=[listed("A portal login", ex.PARTNER_USER)],
        description="Portal logins. Staff see all; a partner user sees its own partner's logins.",
        responses={200: s.PartnerUserSerializer(many=True), **errors(*READ_ERRORS)},
    ),
    retrieve=extend_schema(
        summary="Get a partner user",
        examples=[one("A portal login", ex.PARTNER_USER)],
        responses={200: s.PartnerUserSerializer, **errors(404)},
    ),
    create=extend_schema(
        summary="Create a portal login for a partner",
        description="Partner managers only. The password must pass the password validators.",
        request=s.PartnerUserInputSerializer,
        responses={201: s.PartnerUserSerializer, **errors(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Partner admin",
                value={
                    "partner": 12,
                    "username": "jane.northwind",
                    "email": "jane@northwind.example",
                    "password": "a long passphrase",
                    "role": "admin",
                },
                request_only=True,
            )
        ],
    ),
)
@extend_schema(tags=["partners"])
class PartnerUserViewSet(ScopedViewSet):
    visible = staticmethod(visible_partner_users)
    select_related = ("user",)
    queryset = PartnerUser.objects.none()
    serializer_class = s.PartnerUserSerializer
    filterset_class = PartnerUserFilterSet
    ordering_fields = ["id"]

    def create(self, request):
        data = self.validated(s.PartnerUserInputSerializer)
        partner_user = services.partner_user_create(**data)
        return self.output(partner_user, status=status.HTTP_201_CREATED)
