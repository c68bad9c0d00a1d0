from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path

from account.views import LoginView, PasswordResetDoneView, PasswordResetView
from dashboards.views import home
from portal import funds, onboarding


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page says: send them to the static file."""
    return redirect(static("favicon.ico"))


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("", home, name="home"),
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("apply/", onboarding.apply, name="apply"),
    path("apply/thanks/", onboarding.apply_done, name="apply_done"),
    path("invitations/<str:token>/", onboarding.accept_invitation, name="invitation_accept"),
    path("partners/<int:partner_id>/logo/", onboarding.partner_logo, name="partner_logo"),
    # MDF proof files: to staff and the claiming partner's admins only (portal/funds.py).
    path("mdf/files/<int:file_id>/", funds.proof_file, name="mdf_proof_file"),
    # Password reset and change: Django's views, our templates (templates/registration/); the reset
    # mail is a notification, queued after commit, and rate limited. A change ends the user's other
    # sessions.
    path("password_reset/", PasswordResetView.as_view(), name="password_reset"),
    path("password_reset/done/", PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("account/", include("account.urls")),
    path("dashboard/", include("dashboards.urls")),
    path("portal/", include("portal.urls")),
    path("api/", include("api.urls")),
]
