"""Outbound email, in-app notifications and preferences in the admin: read them; retry failed email.

The body of a secret kind (notifications/kinds.py) is never shown."""

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from notifications.kinds import KINDS
from notifications.models import Notification, NotificationPreference, OutboundEmail
from notifications.services import emails_retry_failed


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(OutboundEmail)
class OutboundEmailAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "to", "subject", "status", "attempts", "sent_at"]
    list_filter = ["status", "kind"]
    search_fields = ["to", "subject"]
    date_hierarchy = "created_at"
    actions = ["retry_failed"]
    readonly_fields = [f.name for f in OutboundEmail._meta.fields]

    def get_fields(self, request: HttpRequest, obj: OutboundEmail | None = None) -> list[Any]:
        fields = list(super().get_fields(request, obj))
        kind = KINDS.get(obj.kind) if obj is not None else None
        if kind is not None and kind.secret:
            # The body holds a working reset or invitation link until it is sent.
            fields = [name for name in fields if name not in ("text", "html")]
        return fields

    @admin.action(description="Send the selected failed emails again")
    def retry_failed(self, request, queryset) -> None:
        count = emails_retry_failed(email_ids=queryset.values_list("pk", flat=True))
        messages.success(request, f"{count} failed email(s) queued again.")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "user", "title", "read_at"]
    list_filter = ["kind"]
    search_fields = ["user__username", "title"]
    list_select_related = ["user"]
    readonly_fields = [f.name for f in Notification._meta.fields]


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(ReadOnlyAdmin):
    list_display = ["user", "kind", "email_enabled", "updated_at"]
    list_filter = ["kind", "email_enabled"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
