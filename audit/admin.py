"""The trail in the admin: readable by superusers, never added to, changed or deleted."""

from auditlog.admin import LogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin

from audit.models import ImportRecord

admin.site.unregister(LogEntry)


@admin.register(LogEntry)
class AppendOnlyLogEntryAdmin(LogEntryAdmin):
    list_display = [*LogEntryAdmin.list_display, "channel"]

    @admin.display(description="Channel")
    def channel(self, obj: LogEntry) -> str:
        return (obj.additional_data or {}).get("channel", "")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # auditlog allows deletes that cascade from another admin page; the trail allows none.
        return False


@admin.register(ImportRecord)
class ImportRecordAdmin(admin.ModelAdmin):
    list_display = ["created_at", "source"]
    readonly_fields = ["source", "files", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
