"""Commission pages for staff: the plans (partner managers edit them) and the monthly review queue
of the commission ledger, with filters and bulk approve / decline (docs/economics.md)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from dashboards.permissions import staff_required
from economics import selectors, services
from economics.models import Basis, CommissionEntry, CommissionPlan, CommissionRule, CommissionSettings
from partners import access
from partners.models import JoinSource, Partner
from prm.http import AuthenticatedRequest
from program.fields import PlainDecimalFormField

PAGE_SIZE = 50


class PlanForm(forms.ModelForm):
    tiers_text = forms.CharField(
        label="Tiers", required=False, max_length=1000, help_text="Comma-separated; empty: any tier."
    )
    partner_types = forms.MultipleChoiceField(
        label="Partner types",
        choices=Partner.Type.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: any type.",
    )
    join_sources = forms.ModelMultipleChoiceField(
        queryset=JoinSource.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: any join source.",
    )
    partner_keys = forms.CharField(
        label="Named partners",
        required=False,
        max_length=5000,
        help_text="Partner keys (or ids), comma-separated; empty: any partner.",
    )

    class Meta:
        model = CommissionPlan
        fields = ["name", "description", "priority", "effective_from", "effective_to", "is_active"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "effective_from": forms.DateInput(attrs={"type": "date"}),
            "effective_to": forms.DateInput(attrs={"type": "date"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plan = self.instance
        if plan.pk is not None and not self.is_bound:
            self.initial["tiers_text"] = ", ".join(plan.tiers)
            self.initial["partner_types"] = plan.partner_types
            self.initial["join_sources"] = list(plan.join_sources.all())
            self.initial["partner_keys"] = ", ".join(p.export_key for p in plan.partners.all())

    def clean_partner_keys(self) -> list[Partner]:
        keys = [k.strip() for k in self.cleaned_data.get("partner_keys", "").split(",") if k.strip()]
        found = {p.key: p for p in Partner.objects.filter(key__in=keys)}
        ids = [int(k) for k in keys if k.isdigit() and k not in found]
        found |= {str(p.pk): p for p in Partner.objects.filter(pk__in=ids)}
        if missing := [k for k in keys if k not in found]:
            raise forms.ValidationError(f"no partner with key or id {', '.join(missing)}")
        return list(found.values())


class RuleForm(forms.Form):
    id = forms.IntegerField(widget=forms.HiddenInput, required=False)
    kind = forms.ChoiceField(choices=[("", "—")] + CommissionRule.Kind.choices, required=False)
    rate = PlainDecimalFormField(
        label="Rate (%)", required=False, max_digits=7, decimal_places=4, min_value=0, max_value=100
    )
    amount = PlainDecimalFormField(label="Fixed amount", required=False, max_digits=14, decimal_places=2)
    cap = PlainDecimalFormField(label="Cap per entry", required=False, max_digits=14, decimal_places=2)


RuleFormSet = forms.formset_factory(RuleForm, extra=2, max_num=30)


def _managers_only(request: AuthenticatedRequest) -> None:
    if not access.can_write_all(request.user):
        raise PermissionDenied("Only partner managers change commission plans and decide commissions.")


class SettingsForm(forms.ModelForm):
    class Meta:
        model = CommissionSettings
        fields = ["hold_days", "minimum_payout"]
        labels = {"hold_days": "Hold period (days)", "minimum_payout": "Minimum payout"}


@staff_required
def commission_plans(request: AuthenticatedRequest) -> HttpResponse:
    """The plans, and the commission settings (partner managers change them here)."""
    settings_form = SettingsForm(request.POST or None, instance=CommissionSettings.load())
    if request.method == "POST":
        _managers_only(request)
        if settings_form.is_valid():
            try:
                services.commission_settings_save(
                    hold_days=settings_form.cleaned_data["hold_days"],
                    minimum_payout=settings_form.cleaned_data["minimum_payout"],
                )
            except ValidationError as error:
                for name, errors in error.message_dict.items():
                    settings_form.add_error(name if name in settings_form.fields else None, errors)
            else:
                messages.success(request, "Commission settings saved.")
                return redirect("dashboards:commission_plans")
    plans = CommissionPlan.objects.prefetch_related("rules", "join_sources", "partners").order_by(
        "-is_active", "-priority", "name", "id"
    )
    return render(
        request,
        "dashboards/commission_plans.html",
        {"plans": plans, "can_edit": access.can_write_all(request.user), "settings_form": settings_form},
    )


@staff_required
def commission_plan_edit(request: AuthenticatedRequest, plan_id: int | None = None) -> HttpResponse:
    """Create (no id) or change a plan and its rules; a rule with an empty kind is left out."""
    _managers_only(request)
    plan = get_object_or_404(CommissionPlan, pk=plan_id) if plan_id is not None else CommissionPlan()
    form = PlanForm(request.POST or None, instance=plan)
    initial = [
        {"id": r.pk, "kind": r.kind, "rate": r.rate, "amount": r.amount, "cap": r.cap}
        for r in (plan.rules.all() if plan.pk else [])
    ]
    rules = RuleFormSet(request.POST or None, initial=initial, prefix="rules")
    if request.method == "POST" and form.is_valid() and rules.is_valid():
        saved = form.save(commit=False)
        saved.tiers = [t.strip() for t in form.cleaned_data["tiers_text"].split(",") if t.strip()]
        saved.partner_types = form.cleaned_data["partner_types"]
        items = [
            {k: v for k, v in r.items() if k != "id" or v is not None}
            for r in rules.cleaned_data
            if r.get("kind")
        ]
        try:
            saved = services.plan_save(
                plan=saved,
                join_sources=form.cleaned_data["join_sources"],
                partners=form.cleaned_data["partner_keys"],
                rules=items,
            )
        except ValidationError as error:
            for name, errors in error.message_dict.items():
                form.add_error(name if name in form.fields else None, errors)
        else:
            messages.success(request, f"Plan “{saved.name}” saved. The nightly ledger build applies it.")
            return redirect("dashboards:commission_plans")
    return render(
        request, "dashboards/commission_plan_edit.html", {"form": form, "rules": rules, "plan": plan}
    )


class ReviewFilterForm(forms.Form):
    status = forms.ChoiceField(
        choices=[("", "Any status")] + CommissionEntry.Status.choices, required=False, initial="pending"
    )
    hold = forms.ChoiceField(
        choices=[("", "Held or not"), ("ready", "Past its hold"), ("held", "Still held")], required=False
    )
    kind = forms.ChoiceField(
        choices=[("", "Earnings and clawbacks")] + CommissionEntry.Kind.choices, required=False
    )
    basis = forms.ChoiceField(choices=[("", "Any basis")] + Basis.choices, required=False)
    partner = forms.ModelChoiceField(queryset=Partner.objects.order_by("name"), required=False)
    plan = forms.ModelChoiceField(queryset=CommissionPlan.objects.order_by("name"), required=False)
    earned_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    earned_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def entry_filter(self) -> selectors.EntryFilter:
        d: dict[str, Any] = self.cleaned_data if self.is_valid() else {"status": "pending"}
        return selectors.EntryFilter(
            status=d.get("status") or "",
            kind=d.get("kind") or "",
            basis=d.get("basis") or "",
            partner_id=d["partner"].pk if d.get("partner") else None,
            plan_id=d["plan"].pk if d.get("plan") else None,
            earned_from=d.get("earned_from"),
            earned_to=d.get("earned_to"),
            hold=d.get("hold") or "",
        )


@staff_required
def commission_review(request: AuthenticatedRequest) -> HttpResponse:
    """The monthly review queue; POST approves or declines the ticked entries."""
    if request.method == "POST":
        _managers_only(request)
        _decide(request)
        return redirect(request.get_full_path())
    params = request.GET.copy()
    if "status" not in params:
        params["status"] = "pending"
    filters = ReviewFilterForm(params)
    qs = selectors.filter_entries(CommissionEntry.objects.all(), filters.entry_filter())
    page = Paginator(
        qs.select_related("partner", "rule__plan", "deal", "registration").order_by("hold_until", "id"),
        PAGE_SIZE,
    ).get_page(request.GET.get("page"))
    query = urlencode([(k, v) for k, v in params.items() if k != "page"])
    return render(
        request,
        "dashboards/commission_review.html",
        {
            "filter_form": filters,
            "page": page,
            "entries": list(page),
            "totals": selectors.entry_totals(qs),
            "query": query,
            "can_decide": access.can_write_all(request.user),
        },
    )


def _decide(request: AuthenticatedRequest) -> None:
    ids = [int(i) for i in request.POST.getlist("entry") if i.isdigit() and len(i) < 19]
    action = request.POST.get("action", "")
    if not ids:
        messages.error(request, "Tick at least one entry; nothing changed.")
        return
    try:
        if action == "approve":
            result = services.entries_approve(entry_ids=ids, by=request.user)
        elif action == "decline":
            result = services.entries_decline(
                entry_ids=ids, reason=request.POST.get("reason", ""), by=request.user
            )
        else:
            messages.error(request, "Unknown action; nothing changed.")
            return
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return
    verb = "approved" if action == "approve" else "declined"
    messages.success(
        request, f"{len(result.decided)} entr{'y' if len(result.decided) == 1 else 'ies'} {verb}."
    )
    if result.on_hold:
        messages.warning(request, f"{len(result.on_hold)} still in their hold period, left pending.")
    if result.not_pending:
        messages.warning(request, f"{len(result.not_pending)} already decided, left as they were.")
