from django.contrib import admin

from economics.models import CommissionEntry, CommissionPlan, CommissionRule, CommissionSettings


class CommissionRuleInline(admin.TabularInline[CommissionRule, CommissionPlan]):
    model = CommissionRule
    extra = 0


@admin.register(CommissionPlan)
class CommissionPlanAdmin(admin.ModelAdmin[CommissionPlan]):
    list_display = ["name", "priority", "effective_from", "effective_to", "is_active"]
    inlines = [CommissionRuleInline]


@admin.register(CommissionEntry)
class CommissionEntryAdmin(admin.ModelAdmin[CommissionEntry]):
    """Read-only: entries change through the ledger services only (docs/economics.md)."""

    list_display = ["id", "partner", "basis", "kind", "amount", "status", "earned_at", "hold_until"]
    list_filter = ["status", "kind", "basis"]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


admin.site.register(CommissionSettings)

import economics.payout_admin  # noqa: E402, F401 - payout batches (read-only)
