"""The portal's "Funds" pages: the partner's MDF budgets and what is left, its requests and claims,
the forms to request funds and to claim them with proof files, and the proof files themselves.

Partner admins only: MDF is money, and partner members get 403 here (docs/mdf.md). Another
partner's request, claim or file is a 404, as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from deals.models import Deal, DealRegistration
from mdf import selectors, services
from mdf.models import MdfClaim, MdfRequest
from mdf.proofs import content_type_of
from partners import access
from partners.models import Partner
from portal.permissions import PartnerRequest, partner_required
from prm.forms import add_service_errors
from program.fields import PlainDecimalFormField
from program.models import program_today
from program.validation import validate_amount, validate_plausible_date

View = Callable[..., HttpResponse]
DATE = forms.DateInput(attrs={"type": "date"})


def funds_admin_required(view: View) -> View:
    """Partner admins only; a member gets 403 (MDF amounts are money)."""

    @partner_required
    @wraps(view)
    def wrapped(request: PartnerRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.partner_membership.is_admin:
            raise PermissionDenied("Only your partner's admins see and request market development funds.")
        return view(request, *args, **kwargs)

    return wrapped


def _money_field(label: str, help_text: str = "") -> PlainDecimalFormField:
    return PlainDecimalFormField(
        label=label,
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0.01"),
        help_text=help_text,
        error_messages={"min_value": "Enter an amount greater than 0."},
        validators=[validate_amount],
    )


class FundsRequestForm(forms.Form):
    activity_type = forms.ChoiceField(label="Activity type", choices=MdfRequest.ActivityType.choices)
    title = forms.CharField(
        label="Activity", max_length=200, help_text="For example: Booth at Cloud Expo Berlin."
    )
    starts_on = forms.DateField(label="Starts on", widget=DATE, validators=[validate_plausible_date])
    ends_on = forms.DateField(label="Ends on", widget=DATE, validators=[validate_plausible_date])
    amount_requested = _money_field(
        "Planned cost", "What you ask for; it comes from the budget of the quarter the activity starts in."
    )
    expected_leads = forms.IntegerField(label="Expected leads", min_value=0, max_value=1_000_000, initial=0)
    description = forms.CharField(
        label="Description", required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 4})
    )


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".pdf,.png,.jpg,.jpeg,.webp"}))
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> Any:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(d, initial) for d in data]
        return [single(data, initial)] if data else []


class RegistrationChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.account.name} · submitted {obj.submitted_at:%Y-%m-%d} · {obj.amount}"


class DealChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name or obj.account.name} · {obj.get_status_display()} · {obj.amount}"


class ClaimForm(forms.Form):
    amount_claimed = _money_field("Amount spent", "At most the approved amount.")
    leads = forms.IntegerField(label="Leads produced", min_value=0, max_value=1_000_000, initial=0)
    summary = forms.CharField(
        label="What happened", required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 3})
    )
    registrations = RegistrationChoices(
        label="Registrations it produced",
        queryset=DealRegistration.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    deals = DealChoices(
        label="Deals it produced",
        queryset=Deal.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    proof_files = MultipleFileField(
        label="Proof of performance",
        required=True,
        help_text="Invoices, photos, screenshots: PDF, PNG, JPEG or WebP, checked by their content.",
    )

    def __init__(self, *args: Any, request_obj: MdfRequest, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What the activity can have produced: the partner's own rows since it started.
        since = request_obj.starts_on - timedelta(days=1)
        partner = request_obj.partner
        registrations = self.fields["registrations"]
        deals = self.fields["deals"]
        assert isinstance(registrations, forms.ModelMultipleChoiceField)
        assert isinstance(deals, forms.ModelMultipleChoiceField)
        # The latest 100 of each (a list of ids: a sliced queryset cannot be filtered when validating).
        registration_ids = list(
            DealRegistration.objects.filter(partner=partner, submitted_at__date__gte=since)
            .order_by("-submitted_at")
            .values_list("pk", flat=True)[:100]
        )
        registrations.queryset = (
            DealRegistration.objects.filter(pk__in=registration_ids)
            .select_related("account")
            .order_by("-submitted_at")
        )
        deal_ids = list(
            Deal.objects.filter(sourcing_partner=partner, created_at__date__gte=since)
            .order_by("-created_at")
            .values_list("pk", flat=True)[:100]
        )
        deals.queryset = (
            Deal.objects.filter(pk__in=deal_ids).select_related("account").order_by("-created_at")
        )


def _own_request(partner: Partner, request_id: int) -> MdfRequest:
    return get_object_or_404(MdfRequest.objects.select_related("budget"), pk=request_id, partner=partner)


@require_GET
@funds_admin_required
def funds(request: PartnerRequest) -> HttpResponse:
    partner = request.partner
    today = program_today()
    budgets = selectors.budget_figures(
        selectors.partner_budgets(partner)
        .filter(ends_on__gte=today - timedelta(days=366))
        .order_by("starts_on")
    )
    requests = (
        MdfRequest.objects.filter(partner=partner).select_related("budget").prefetch_related("claims")
    ).order_by("-submitted_at")[:100]
    claims = (
        MdfClaim.objects.filter(request__partner=partner)
        .select_related("request")
        .prefetch_related("files")
        .order_by("-submitted_at")[:100]
    )
    return render(
        request,
        "portal/funds.html",
        {"partner": partner, "budgets": budgets, "requests": requests, "claims": claims, "today": today},
    )


@funds_admin_required
def request_new(request: PartnerRequest) -> HttpResponse:
    form = FundsRequestForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                created = services.request_submit(
                    partner=request.partner, submitted_by=request.user, **form.cleaned_data
                )
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                messages.success(
                    request, f"Request #{created.pk} submitted; your partner manager decides it."
                )
                return redirect("portal:funds_request", created.pk)
    elif request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    budgets = selectors.budget_figures(
        selectors.partner_budgets(request.partner).filter(ends_on__gte=program_today()).order_by("starts_on")
    )
    return render(
        request,
        "portal/funds_request_new.html",
        {"form": form, "budgets": budgets},
        status=400 if form.errors else 200,
    )


@funds_admin_required
def request_detail(request: PartnerRequest, request_id: int) -> HttpResponse:
    """One request, its claims, and the claim form once it is approved; POST submits a claim."""
    funds_request = _own_request(request.partner, request_id)
    claims = funds_request.claims.prefetch_related("files", "registrations__account", "deals__account")
    today = program_today()
    open_to_claim = funds_request.status == MdfRequest.Status.APPROVED and not any(
        c.status in MdfClaim.LIVE for c in claims
    )
    deadline = funds_request.claim_deadline
    claimable = open_to_claim and funds_request.ends_on <= today and (deadline is None or today <= deadline)
    form = ClaimForm(request.POST or None, request.FILES or None, request_obj=funds_request)
    if request.method == "POST":
        if not claimable:
            messages.error(request, "This request cannot be claimed now.")
            return redirect("portal:funds_request", funds_request.pk)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.claim_submit(
                    request=funds_request,
                    submitted_by=request.user,
                    amount_claimed=data["amount_claimed"],
                    leads=data["leads"],
                    summary=data["summary"],
                    registration_ids=[r.pk for r in data["registrations"]],
                    deal_ids=[d.pk for d in data["deals"]],
                    files=data["proof_files"],
                )
            except ValidationError as error:
                errors = error.message_dict if hasattr(error, "error_dict") else {"__all__": error.messages}
                if "files" in errors:
                    errors["proof_files"] = errors.pop("files")
                add_service_errors(form, ValidationError(errors))
            else:
                messages.success(request, "Claim submitted with its proof; your partner manager reviews it.")
                return redirect("portal:funds_request", funds_request.pk)
    elif request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405)
    return render(
        request,
        "portal/funds_request.html",
        {
            "funds_request": funds_request,
            "claims": claims,
            "form": form,
            "claimable": claimable,
            "claim_later": open_to_claim and funds_request.ends_on > today,
        },
        status=400 if form.errors else 200,
    )


@require_GET
def proof_file(request: HttpRequest, file_id: int) -> HttpResponseBase:
    """A proof file, to staff and to the admins of the claiming partner only; anyone else: 404."""
    if not request.user.is_authenticated:
        return redirect(f"{reverse('login')}?next={request.path}")
    membership = access.membership_of(request.user)
    if membership is not None and not membership.is_admin:
        raise PermissionDenied("Only your partner's admins see MDF claims and their files.")
    proof = get_object_or_404(selectors.visible_proofs(request.user), pk=file_id)
    try:
        handle = proof.file.open("rb")
    except OSError:
        raise Http404 from None
    content_type = content_type_of(proof.file.name or "")
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in proof.name)[:100] or "proof"
    disposition = "inline" if content_type.startswith("image/") else "attachment"
    response["Content-Disposition"] = f'{disposition}; filename="{safe_name}"'
    return response
