from django.urls import path

from dashboards import (
    attribution_views,
    audit_views,
    deal_views,
    drilldown_views,
    economics_views,
    insight_views,
    mdf_views,
    onboarding_views,
    payout_views,
    registration_views,
    views,
    webhook_views,
)

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
    path("attribution/", attribution_views.attribution, name="attribution"),
    path("drill/<slug:metric>/", drilldown_views.drill, name="drill"),
    path("reconciliation/", views.reconciliation, name="reconciliation"),
    path("audit/", audit_views.audit_trail, name="audit"),
    path("deals/", deal_views.deal_list_page, name="deals"),
    path("deals/<int:deal_id>/", deal_views.deal_detail, name="deal_detail"),
    path("insights/heat-map/", insight_views.heatmap, name="heatmap"),
    path("insights/forecast/", insight_views.forecast, name="forecast"),
    path("mdf/", mdf_views.budgets, name="mdf_budgets"),
    path("mdf/requests/", mdf_views.requests_queue, name="mdf_requests"),
    path("mdf/claims/", mdf_views.claims_queue, name="mdf_claims"),
    path("webhooks/", webhook_views.webhooks, name="webhooks"),
    path("webhooks/<int:endpoint_id>/", webhook_views.webhook_detail, name="webhook_detail"),
    path("commissions/plans/", economics_views.commission_plans, name="commission_plans"),
    path("commissions/plans/new/", economics_views.commission_plan_edit, name="commission_plan_new"),
    path(
        "commissions/plans/<int:plan_id>/", economics_views.commission_plan_edit, name="commission_plan_edit"
    ),
    path("commissions/review/", economics_views.commission_review, name="commission_review"),
    path("payouts/", payout_views.payout_batches, name="payout_batches"),
    path("payouts/<int:batch_id>/", payout_views.payout_batch, name="payout_batch"),
    path("payouts/<int:batch_id>/paid/", payout_views.payout_batch_paid, name="payout_batch_paid"),
    path("payouts/<int:batch_id>/export.csv", payout_views.payout_batch_export, name="payout_batch_export"),
    path("payouts/statements/<int:payout_id>/", payout_views.payout_statement, name="payout_statement"),
]
