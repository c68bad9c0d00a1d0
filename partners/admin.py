"""Admin for join sources, partners and their portal users.

Access follows the staff roles (partners.access): partner managers and superusers change data,
sales ops read it. Forms validate through the models' clean() (the shared rules in partners.rules) and
the lifecycle table; the approve / reject actions call the partner services.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from partners.access import can_write_all, is_staff_reader
from partners.invitations import invitation_revoke
from partners.models import Application, Invitation, JoinSource, Partner, PartnerProfile, PartnerUser
from partners.rules import partner_transition_errors
from partners.services import partner_approve, partner_reject
from prm.http import AuthenticatedRequest


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line for an admin message: `field: message; field: message`."""
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


class SafeAutocompleteSelect(AutocompleteSelect):
    """Django's autocomplete widget looks the posted value up to re-render a form with errors; a
    value that is no id (`abc`, `1.5`) made that lookup raise. It is shown as no selection, and the
    form field reports it."""

    def optgroups(self, name, value, attr=None):
        target = self.field.remote_field.model._meta.pk
        ids = []
        for item in value:
            try:
                target.to_python(item)
            except ValidationError:
                continue
            ids.append(item)
        return super().optgroups(name, ids, attr)


class RoleAdminMixin:
    """Partner managers (and superusers) may change rows; sales ops may only look."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.get_autocomplete_fields(request):
            kwargs.setdefault(
                "widget", SafeAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_staff_reader(request.user)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return is_staff_reader(request.user)

    def has_add_permission(self, request: HttpRequest, *args) -> bool:
        return can_write_all(request.user)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return can_write_all(request.user)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return can_write_all(request.user)


def run_service_per_row(modeladmin, request, rows, service, done: str) -> None:
    """Call `service(row)` for each row; refusals become error messages, never a server error."""
    succeeded = 0
    for row in rows:
        try:
            service(row)
        except ValidationError as exc:
            modeladmin.message_user(request, f"{row}: {describe_validation_error(exc)}", messages.ERROR)
        else:
            succeeded += 1
    if succeeded:
        modeladmin.message_user(request, f"{done}: {succeeded}.", messages.SUCCESS)


@admin.register(JoinSource)
class JoinSourceAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ["name", "kind", "key", "offered_on_application", "partner_count"]
    list_filter = ["kind", "offered_on_application"]
    search_fields = ["name", "key"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[JoinSource]:
        return super().get_queryset(request).annotate(partner_count=Count("partners"))

    @admin.display(description="Partners", ordering="partner_count")
    def partner_count(self, obj: JoinSource) -> int:
        return obj.partner_count  # type: ignore[attr-defined]  # annotated by get_queryset


class PartnerUserInline(RoleAdminMixin, admin.TabularInline):
    model = PartnerUser
    extra = 0
    # raw id, not autocomplete: the autocomplete view needs the auth.User admin's view permission.
    raw_id_fields = ["user"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PartnerUser]:
        return super().get_queryset(request).select_related("user", "partner")


class PartnerAdminForm(forms.ModelForm):
    class Meta:
        model = Partner
        fields = [
            "name",
            "key",
            "type",
            "tier",
            "status",
            "join_source",
            "applied_at",
            "joined_at",
            "referred_by",
            "manager",
        ]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        # Model.clean() checks the dates against the status; the lifecycle also needs the old status.
        if self.instance.pk is not None and "status" in cleaned:
            old_status = Partner.objects.filter(pk=self.instance.pk).values_list("status", flat=True).first()
            if old_status is not None:  # None: the partner was deleted meanwhile; saving will say so
                errors = partner_transition_errors(old_status=old_status, new_status=cleaned["status"])
                for field, messages_ in errors.items():
                    self.add_error(field, messages_)
        return cleaned


@admin.register(Partner)
class PartnerAdmin(RoleAdminMixin, admin.ModelAdmin):
    form = PartnerAdminForm
    list_display = [
        "name",
        "type",
        "status",
        "tier",
        "join_source",
        "applied_at",
        "joined_at",
        "manager",
        "key",
    ]
    list_filter = ["status", "type", "join_source__kind", "tier"]
    search_fields = ["name", "key"]
    list_select_related = ["join_source", "manager"]
    autocomplete_fields = ["join_source", "referred_by"]
    raw_id_fields = ["manager"]
    readonly_fields = ["created_at", "updated_at"]
    date_hierarchy = "applied_at"
    inlines = [PartnerUserInline]
    actions = ["approve_applications", "reject_applications"]

    @admin.action(description="Approve selected applications (joined today)", permissions=["change"])
    def approve_applications(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        run_service_per_row(
            self, request, queryset, lambda partner: partner_approve(partner=partner), "Approved partners"
        )

    @admin.action(description="Reject selected applications", permissions=["change"])
    def reject_applications(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        run_service_per_row(
            self, request, queryset, lambda partner: partner_reject(partner=partner), "Rejected applications"
        )


@admin.register(PartnerUser)
class PartnerUserAdmin(RoleAdminMixin, admin.ModelAdmin):
    list_display = ["user", "partner", "role"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "partner__name"]
    list_select_related = ["user", "partner"]
    autocomplete_fields = ["partner"]
    raw_id_fields = ["user"]


class ReadOnlyRowsMixin(RoleAdminMixin):
    """Rows written only by the onboarding services: the admin shows them, never adds or edits."""

    def has_add_permission(self, request: HttpRequest, *args) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Application)
class ApplicationAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    list_display = ["partner", "contact_name", "contact_email", "source_origin", "submitted_at", "decided_at"]
    list_filter = ["source_origin", "partner__status"]
    search_fields = ["partner__name", "contact_name", "contact_email"]
    list_select_related = ["partner"]
    date_hierarchy = "submitted_at"


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    list_display = [
        "email",
        "partner",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    ]
    list_filter = ["role"]
    search_fields = ["email", "partner__name"]
    list_select_related = ["partner", "invited_by"]
    exclude = ["token_hash"]
    actions = ["revoke"]

    @admin.action(description="Withdraw selected pending invitations")
    def revoke(self, request: AuthenticatedRequest, queryset: QuerySet[Invitation]) -> None:
        if not can_write_all(request.user):
            self.message_user(request, "Only partner managers withdraw invitations.", messages.ERROR)
            return
        run_service_per_row(
            self,
            request,
            queryset.select_related("partner"),
            lambda invitation: invitation_revoke(invitation=invitation, revoked_by=request.user),
            "Withdrawn invitations",
        )


@admin.register(PartnerProfile)
class PartnerProfileAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    list_display = ["partner", "contact_name", "contact_email", "website", "updated_at"]
    search_fields = ["partner__name", "contact_name", "contact_email"]
    list_select_related = ["partner"]
    # The logo is served by the partner logo view (access checked), never by a media URL.
    exclude = ["logo"]
