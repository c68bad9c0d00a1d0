"""The trail in the admin: readable by superusers, never added to, changed or deleted."""

from auditlog.admin import LogEntryAdmin
from auditlog.models import LogEntry
from django.contrib import admin

from audit.models import ImportRecord
from program.admin import ReadOnlyAdminMixin

admin.site.unregister(LogEntry)


@admin.register(LogEntry)
class AppendOnlyLogEntryAdmin(ReadOnlyAdminMixin, LogEntryAdmin):
    # auditlog allows deletes that cascade from another admin page; the trail allows none.
    list_display = [*LogEntryAdmin.list_display, "channel"]

    @admin.display(description="Channel")
    def channel(self, obj: LogEntry) -> str:
        return (obj.additional_data or {}).get("channel", "")


@admin.register(ImportRecord)
class ImportRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "source"]
    readonly_fields = ["source", "files", "created_at"]
