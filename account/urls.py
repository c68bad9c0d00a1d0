from django.urls import path

from account import views

app_name = "account"

urlpatterns = [
    path("notifications/", views.notification_preferences, name="notification_preferences"),
    path("notifications/inbox/", views.notification_inbox, name="notification_inbox"),
    path(
        "notifications/inbox/read/", views.notification_inbox_mark_read, name="notification_inbox_mark_read"
    ),
]
