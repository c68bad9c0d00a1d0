"""Payout batches in the admin: read-only (they change through economics.payouts only)."""

from __future__ import annotations

from django.contrib import admin

from economics.payout_models import Payout, PayoutBatch


class ReadOnlyAdmin:
    def has_add_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(PayoutBatch)
class PayoutBatchAdmin(ReadOnlyAdmin, admin.ModelAdmin[PayoutBatch]):
    list_display = ["month", "status", "currency", "minimum_payout", "created_at", "paid_on"]
    list_filter = ["status"]


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin, admin.ModelAdmin[Payout]):
    list_display = [
        "id",
        "batch",
        "partner",
        "carried_in",
        "entries_total",
        "amount",
        "carried_out",
        "status",
    ]
    list_filter = ["status", "batch"]
