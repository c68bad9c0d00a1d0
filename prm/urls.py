from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboards.views import home
from portal import onboarding

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("apply/", onboarding.apply, name="apply"),
    path("apply/thanks/", onboarding.apply_done, name="apply_done"),
    path("invitations/<str:token>/", onboarding.accept_invitation, name="invitation_accept"),
    path("partners/<int:partner_id>/logo/", onboarding.partner_logo, name="partner_logo"),
    path("dashboard/", include("dashboards.urls")),
    path("portal/", include("portal.urls")),
    path("api/", include("api.urls")),
]
