from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboards.views import home

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/", include("dashboards.urls")),
    path("portal/", include("portal.urls")),
    path("api/", include("api.urls")),
]
