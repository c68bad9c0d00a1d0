"""Admin for costs, targets, and read-only views of runs, published values and stored forecasts."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from kpis.forecast_store import MONEY_FIELDS
from kpis.models import (
    CostEntry,
    ForecastRow,
    ForecastSnapshot,
    KpiRun,
    KpiValue,
    ReconciliationItem,
    Target,
)
from kpis.services import kpi_recompute_request
from program.admin import ReadOnlyAdminMixin


@admin.register(CostEntry)
class CostEntryAdmin(admin.ModelAdmin[CostEntry]):
    list_display = ("date", "category", "amount", "partner", "join_source", "source", "counted", "note")
    list_filter = ("category", "source", "join_source")
    search_fields = ("note", "reference", "partner__name")
    date_hierarchy = "date"
    autocomplete_fields = ()
    raw_id_fields = ("partner",)
    # Booked costs come from payouts and MDF claims (kpis.costs.book_program_cost), never from here.
    readonly_fields = ("source", "reference")

    def get_queryset(self, request: HttpRequest) -> QuerySet[CostEntry]:
        return CostEntry.objects.with_counted()

    @admin.display(boolean=True, description="counted in KPIs")
    def counted(self, cost: CostEntry) -> bool:
        """False for a recorded cost a booked one supersedes (docs/kpis.md)."""
        return bool(getattr(cost, "counted", True))


@admin.register(Target)
class TargetAdmin(admin.ModelAdmin[Target]):
    list_display = ("metric", "period", "grain", "value", "partner", "join_source")
    list_filter = ("grain", "metric")
    raw_id_fields = ("partner",)
    # Both follow from the period (Target.clean), so they cannot disagree with it.
    readonly_fields = ("grain", "period_start")


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Any]):
    pass


@admin.register(KpiRun)
class KpiRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "trigger",
        "mode",
        "status",
        "as_of",
        "attribution_model",
        "started_at",
        "duration_seconds",
        "rows_written",
        "rows_deleted",
        "periods_recomputed",
        "changed_rows",
    )
    list_filter = ("status", "trigger", "mode")
    actions = ["recompute_now"]

    @admin.action(description="Recompute KPIs now (full)")
    def recompute_now(self, request: HttpRequest, queryset: QuerySet[KpiRun]) -> None:
        # The admin site lets only signed-in staff in: the user is never anonymous here.
        user = request.user if request.user.is_authenticated else None
        run = kpi_recompute_request(trigger=KpiRun.Trigger.MANUAL, mode=KpiRun.Mode.FULL, requested_by=user)
        self.message_user(request, f"KPI run #{run.pk} is {run.status}.", messages.SUCCESS)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, object] | None = None
    ) -> HttpResponse:
        # The action needs no selection: it starts one program-wide run.
        if (
            request.method == "POST"
            and request.POST.get("action") == "recompute_now"
            and not request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        ):
            post = request.POST.copy()
            post.setlist(helpers.ACTION_CHECKBOX_NAME, [str(r.pk) for r in KpiRun.objects.all()[:1]] or ["0"])
            # The stubs type request.POST as immutable; the admin itself replaces it the same way.
            request.POST = post  # type: ignore[assignment]
        return super().changelist_view(request, extra_context)


@admin.register(KpiValue)
class KpiValueAdmin(ReadOnlyAdmin):
    list_display = (
        "scope",
        "scope_key",
        "grain",
        "period",
        "metric",
        "target_metric",
        "value",
        "attribution_model",
    )
    list_filter = ("grain", "scope", "metric", "attribution_model")
    search_fields = ("scope_key", "period")
    show_full_result_count = False


@admin.register(ReconciliationItem)
class ReconciliationItemAdmin(ReadOnlyAdmin):
    list_display = ("kind", "description", "deal_id", "partner_id", "touch_id", "registration_ids")
    list_filter = ("kind",)


# The stored pipeline forecast (kpis.forecast_store): computed after each publication, never edited.
@admin.register(ForecastSnapshot)
class ForecastSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("id", "quarter", "as_of", "run", "computed_at", "duration_seconds")
    # Only the runs some snapshot followed (the latest few are kept), not every run.
    list_filter = ("as_of", ("run", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("run",)
    date_hierarchy = "as_of"


@admin.register(ForecastRow)
class ForecastRowAdmin(ReadOnlyAdmin):
    list_display = (
        "snapshot",
        "position",
        "scope",
        "scope_id",
        "name",
        *MONEY_FIELDS,
    )
    list_filter = ("scope", "snapshot__as_of", ("snapshot__run", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("snapshot",)
    search_fields = ("name",)
    ordering = ("-snapshot_id", "scope", "position")
    # A snapshot holds a row per partner: no exact count of every row on each page.
    show_full_result_count = False
