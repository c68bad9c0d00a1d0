from django.urls import path

from dashboards import audit_views, onboarding_views, registration_views, views, webhook_views

app_name = "dashboards"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("recompute/", views.recompute, name="recompute"),
    path("runs/<int:run_id>/status.json", views.run_status, name="run_status"),
    path("runs/<int:run_id>/release/", views.release_run, name="release_run"),
    path("join-sources/", views.join_sources, name="join_sources"),
    path("partners/", views.partners, name="partners"),
    path("partners/<int:partner_id>/", views.partner_detail, name="partner_detail"),
    path(
        "partners/<int:partner_id>/invite/",
        onboarding_views.invite_partner_admin,
        name="invite_partner_admin",
    ),
    path("applications/", onboarding_views.applications, name="applications"),
    path("registrations/", registration_views.registrations, name="registrations"),
    path("attribution/", views.attribution, name="attribution"),
    path("reconciliation/", views.reconciliation, name="reconciliation"),
    path("audit/", audit_views.audit_trail, name="audit"),
    path("webhooks/", webhook_views.webhooks, name="webhooks"),
    path("webhooks/<int:endpoint_id>/", webhook_views.webhook_detail, name="webhook_detail"),
]
