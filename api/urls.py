"""/api/v1/: the resources, token management, and the OpenAPI schema with its two viewers."""

from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from api.views.auth import ApiTokenViewSet
from api.views.base import not_found
from api.views.deals import AccountViewSet, DealViewSet, RegistrationViewSet, TouchViewSet
from api.views.drilldown import KpiDrilldownView
from api.views.economics import CommissionEntryViewSet, CommissionPlanViewSet
from api.views.insights import ForecastView, HeatMapView
from api.views.integrations import ChangeFeedView, WebhookEndpointViewSet
from api.views.interchange import ImportJobView, ImportProgressView, ProgramImportView
from api.views.kpis import (
    AttributionView,
    CostEntryViewSet,
    KpiExportView,
    KpiRunViewSet,
    KpiValueViewSet,
    ReconciliationView,
    TargetViewSet,
)
from api.views.mdf import MdfBudgetViewSet, MdfClaimViewSet, MdfRequestViewSet
from api.views.partners import JoinSourceViewSet, PartnerUserViewSet, PartnerViewSet
from api.views.payouts import PayoutBatchViewSet, PayoutViewSet

app_name = "api"

# Endpoints outside the router that the API root lists too (name in this namespace).
ROOT_EXTRAS = {
    "kpi-attribution": "kpi-attribution",
    "kpi-export": "kpi-export",
    "reconciliation": "reconciliation",
    "imports": "program-import",
    "changes": "changes",
    "schema": "schema",
    "docs": "swagger-ui",
    "redoc": "redoc",
}


class ProgramRouter(DefaultRouter):
    """The router whose root (/api/v1/) lists every endpoint, not only the registered viewsets."""

    def get_api_root_view(self, api_urls=None):
        list_name = self.routes[0].name
        api_root_dict = {prefix: list_name.format(basename=basename) for prefix, _, basename in self.registry}
        api_root_dict.update(ROOT_EXTRAS)
        return self.APIRootView.as_view(api_root_dict=dict(sorted(api_root_dict.items())))


router = ProgramRouter()
router.register("join-sources", JoinSourceViewSet, basename="join-source")
router.register("partners", PartnerViewSet, basename="partner")
router.register("partner-users", PartnerUserViewSet, basename="partner-user")
router.register("accounts", AccountViewSet, basename="account")
router.register("registrations", RegistrationViewSet, basename="registration")
router.register("deals", DealViewSet, basename="deal")
router.register("touches", TouchViewSet, basename="touch")
router.register("costs", CostEntryViewSet, basename="cost")
router.register("targets", TargetViewSet, basename="target")
router.register("kpi-values", KpiValueViewSet, basename="kpi-value")
router.register("kpi-runs", KpiRunViewSet, basename="kpi-run")
router.register("auth/tokens", ApiTokenViewSet, basename="api-token")
router.register("webhooks", WebhookEndpointViewSet, basename="webhook")
router.register("commission-plans", CommissionPlanViewSet, basename="commission-plan")
router.register("commission-entries", CommissionEntryViewSet, basename="commission-entry")
router.register("payout-batches", PayoutBatchViewSet, basename="payout-batch")
router.register("payouts", PayoutViewSet, basename="payout")
router.register("mdf-budgets", MdfBudgetViewSet, basename="mdf-budget")
router.register("mdf-requests", MdfRequestViewSet, basename="mdf-request")
router.register("mdf-claims", MdfClaimViewSet, basename="mdf-claim")

v1: list[URLPattern | URLResolver] = [
    path("kpi-drilldown/<slug:metric>/", KpiDrilldownView.as_view(), name="kpi-drilldown"),
    path("kpi-attribution/", AttributionView.as_view(), name="kpi-attribution"),
    path("kpi-heat-map/", HeatMapView.as_view(), name="kpi-heat-map"),
    path("kpi-forecast/", ForecastView.as_view(), name="kpi-forecast"),
    path("kpi-export/", KpiExportView.as_view(), name="kpi-export"),
    path("reconciliation/", ReconciliationView.as_view(), name="reconciliation"),
    path("imports/", ProgramImportView.as_view(), name="program-import"),
    path("imports/jobs/<uuid:job_id>/", ImportJobView.as_view(), name="import-job"),
    # The id's own characters only: anything else is not an import's id (404 before the view).
    re_path(
        r"^imports/progress/(?P<progress_id>[A-Za-z0-9_-]{8,64})/$",
        ImportProgressView.as_view(),
        name="program-import-progress",
    ),
    path("changes/", ChangeFeedView.as_view(), name="changes"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="swagger-ui"),
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="api:schema", template_name="api/redoc.html"),
        name="redoc",
    ),
    path("", include(router.urls)),
    # Anything else under /api/ is a 404 in the API's error shape, never Django's HTML page.
    re_path(r"^.*$", not_found, name="not-found"),
]

urlpatterns = [path("v1/", include(v1)), re_path(r"^.*$", not_found)]
