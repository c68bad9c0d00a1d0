"""Admin for accounts, deals, touches and the deal registration review queue.

Deal and touch forms validate through the models' clean(), which applies deals.rules, so the admin
refuses exactly what the services refuse. Registrations are decided only through actions that call
the registration services; a refusal is shown as an admin message.
"""

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from deals.models import Account, Deal, DealRegistration, Touch
from deals.services import registration_approve, registration_reject
from partners.admin import RoleAdminMixin, run_service_per_row
from prm.http import AuthenticatedRequest


@admin.register(Account)
class AccountAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ["name", "domain", "key"]
    search_fields = ["name", "domain", "key"]


class TouchInline(RoleAdminMixin, admin.TabularInline):
    model = Touch
    extra = 0
    autocomplete_fields = ["partner"]
    fields = ["partner", "kind", "touched_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Touch]:
        return super().get_queryset(request).select_related("partner")


@admin.register(Deal)
class DealAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = [
        "__str__",
        "account",
        "amount",
        "status",
        "created_at",
        "closed_at",
        "sourcing_partner",
        "key",
    ]
    list_filter = ["status", ("sourcing_partner", admin.EmptyFieldListFilter), "created_at", "closed_at"]
    search_fields = ["name", "key", "account__name", "account__domain", "sourcing_partner__name"]
    list_select_related = ["account", "sourcing_partner"]
    autocomplete_fields = ["account", "sourcing_partner"]
    readonly_fields = ["updated_at"]
    date_hierarchy = "created_at"
    inlines = [TouchInline]


@admin.register(Touch)
class TouchAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "deal", "partner", "kind", "touched_at"]
    list_filter = ["kind", "touched_at"]
    search_fields = ["partner__name", "deal__name", "deal__key", "deal__account__name"]
    list_select_related = ["partner", "deal", "deal__account"]
    autocomplete_fields = ["deal", "partner"]
    date_hierarchy = "touched_at"


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), strip=True)


class RegistrationAdminForm(forms.ModelForm):
    class Meta:
        model = DealRegistration
        fields = ["notes", "expected_close_date"]


@admin.register(DealRegistration)
class DealRegistrationAdmin(RoleAdminMixin, admin.ModelAdmin):
    form = RegistrationAdminForm
    list_display = [
        "id",
        "partner",
        "account",
        "amount",
        "status",
        "submitted_at",
        "protection_expires_at",
        "conflict",
        "decided_at",
        "deal_number",
    ]
    list_filter = ["status", ("conflict_with", admin.EmptyFieldListFilter), "submitted_at", "decided_at"]
    search_fields = ["partner__name", "account__name", "account__domain", "key"]
    list_select_related = [
        "partner",
        "account",
        "conflict_with__partner",
    ]
    date_hierarchy = "submitted_at"
    readonly_fields = [
        "key",
        "partner",
        "account",
        "amount",
        "status",
        "submitted_at",
        "submitted_by",
        "protection_expires_at",
        "conflict_with",
        "conflict_override_reason",
        "decided_at",
        "decided_by",
        "decision_reason",
        "deal",
        "updated_at",
    ]
    fields = (*readonly_fields[:5], "expected_close_date", "notes", *readonly_fields[5:])
    actions = ["approve_registrations", "reject_registrations", "override_and_approve_registrations"]

    @admin.display(description="Conflicts with", ordering="conflict_with")
    def conflict(self, obj: DealRegistration) -> str:
        return (
            f"#{obj.conflict_with_id} {obj.conflict_with.partner}" if obj.conflict_with is not None else "—"
        )

    @admin.display(description="Deal", ordering="deal")
    def deal_number(self, obj: DealRegistration) -> str:
        return f"#{obj.deal_id}" if obj.deal_id else "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Registrations come from the portal, the API and imports, which check conflicts on submit.
        return False

    def _reason_page(
        self, request, queryset, *, action: str, title: str, intro: str, label: str, submit_label: str
    ):
        """The intermediate page that asks for a reason; returns (reason, None) once it was posted."""
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        form.fields["reason"].label = label
        if form.is_bound and form.is_valid():
            return form.cleaned_data["reason"], None
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "opts": self.model._meta,
            "queryset": queryset.select_related(
                "partner", "account", "conflict_with__partner", "conflict_with__account"
            ),
            "form": form,
            "action": action,
            "submit_label": submit_label,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return None, TemplateResponse(request, "admin/deals/action_reason_form.html", context)

    @admin.action(description="Approve selected registrations", permissions=["change"])
    def approve_registrations(
        self, request: AuthenticatedRequest, queryset: QuerySet[DealRegistration]
    ) -> None:
        run_service_per_row(
            self,
            request,
            queryset.select_related("partner", "account"),
            lambda registration: registration_approve(registration=registration, decided_by=request.user),
            "Approved registrations (each opened a partner-sourced deal)",
        )

    @admin.action(description="Reject selected registrations…", permissions=["change"])
    def reject_registrations(self, request: AuthenticatedRequest, queryset: QuerySet[DealRegistration]):
        reason, page = self._reason_page(
            request,
            queryset,
            action="reject_registrations",
            title="Reject registrations",
            intro="The partner sees this reason. Reject these registrations:",
            label="Reason",
            submit_label="Reject",
        )
        if page is not None:
            return page
        run_service_per_row(
            self,
            request,
            queryset.select_related("partner", "account"),
            lambda registration: registration_reject(
                registration=registration, decided_by=request.user, reason=reason
            ),
            "Rejected registrations",
        )
        return None

    @admin.action(
        description="Approve selected registrations despite a channel conflict…", permissions=["change"]
    )
    def override_and_approve_registrations(
        self, request: AuthenticatedRequest, queryset: QuerySet[DealRegistration]
    ):
        reason, page = self._reason_page(
            request,
            queryset,
            action="override_and_approve_registrations",
            title="Approve despite a channel conflict",
            intro="Another partner holds a protected claim on these customers. Say why these should win:",
            label="Override reason",
            submit_label="Approve with override",
        )
        if page is not None:
            return page
        run_service_per_row(
            self,
            request,
            queryset.select_related("partner", "account"),
            lambda registration: registration_approve(
                registration=registration, decided_by=request.user, override_reason=reason
            ),
            "Approved registrations with an override (each opened a partner-sourced deal)",
        )
        return None
