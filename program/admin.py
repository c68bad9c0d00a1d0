"""The program settings' admin, and admin pieces every app may use."""

from django.contrib import admin
from django.http import HttpRequest

from program.models import ProgramSettings


class ReadOnlyAdminMixin:
    """Rows the admin shows but never adds, changes or deletes (engine output, the audit trail)."""

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ProgramSettings)
class ProgramSettingsAdmin(admin.ModelAdmin):
    list_display = ("currency", "time_zone", "attribution_model", "activation_window_days", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not ProgramSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
