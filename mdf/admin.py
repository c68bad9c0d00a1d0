"""Read-mostly admin views of MDF; changes go through the dashboards and the API (mdf.services)."""

from django.contrib import admin

from mdf.models import MdfBudget, MdfClaim, MdfProofFile, MdfRequest


@admin.register(MdfBudget)
class MdfBudgetAdmin(admin.ModelAdmin[MdfBudget]):
    list_display = ("quarter", "partner", "tier", "amount", "updated_at")
    list_filter = ("quarter", "tier")
    readonly_fields = [f.name for f in MdfBudget._meta.concrete_fields]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(MdfRequest)
class MdfRequestAdmin(admin.ModelAdmin[MdfRequest]):
    list_display = (
        "id",
        "partner",
        "title",
        "status",
        "amount_requested",
        "amount_approved",
        "claim_deadline",
    )
    list_filter = ("status", "activity_type")
    readonly_fields = [f.name for f in MdfRequest._meta.concrete_fields]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(MdfClaim)
class MdfClaimAdmin(admin.ModelAdmin[MdfClaim]):
    list_display = ("id", "request", "status", "amount_claimed", "amount_approved", "reimbursed_on")
    list_filter = ("status",)
    readonly_fields = [f.name for f in MdfClaim._meta.concrete_fields]

    def has_add_permission(self, request: object) -> bool:
        return False


@admin.register(MdfProofFile)
class MdfProofFileAdmin(admin.ModelAdmin[MdfProofFile]):
    list_display = ("id", "claim", "name", "content_type", "size", "uploaded_at")
    readonly_fields = [f.name for f in MdfProofFile._meta.concrete_fields]

    def has_add_permission(self, request: object) -> bool:
        return False
