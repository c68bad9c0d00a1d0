from django.urls import path

from portal import drilldown, earnings, forecast_views, funds, people, views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("register/", views.register, name="register"),
    path("register/conflicts.json", views.conflicts_json, name="conflicts"),
    path("registrations/", views.registrations, name="registrations"),
    path("registrations/<int:registration_id>/", views.registration_detail, name="registration_detail"),
    path("deals/", views.deals, name="deals"),
    path("deals/<int:deal_id>/", views.deal_detail, name="deal_detail"),
    path("drill/<slug:metric>/", drilldown.drill, name="drill"),
    path("users/", people.users, name="users"),
    path("users/<int:membership_id>/access/", people.user_access, name="user_access"),
    path("invitations/<int:invitation_id>/revoke/", people.revoke_invitation, name="revoke_invitation"),
    path("profile/", people.profile, name="profile"),
    path("forecast/", forecast_views.forecast, name="forecast"),
    path("earnings/", earnings.earnings, name="earnings"),
    path("earnings/statements/<int:payout_id>/", earnings.statement, name="earnings_statement"),
    path("funds/", funds.funds, name="funds"),
    path("funds/requests/new/", funds.request_new, name="funds_request_new"),
    path("funds/requests/<int:request_id>/", funds.request_detail, name="funds_request"),
]
