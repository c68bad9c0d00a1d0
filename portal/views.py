"""The partner portal: a partner's own numbers, registrations and deals, nothing of anyone else's."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.selectors import registration_history
from deals.models import Deal, DealRegistration
from deals.rules import normalise_domain
from deals.selectors import registration_conflicts, visible_deals, visible_registrations, visible_touches
from deals.services import registration_submit
from kpis import selectors as kpi_selectors
from kpis.metrics import Grain, Scope
from kpis.periods import parse_period, period_of
from portal.forms import DealRegistrationForm
from portal.permissions import PartnerRequest, partner_required
from prm.forms import add_service_errors
from program.models import ProgramSettings

# Lists grow with the partner's history: a page at a time.
PORTAL_PAGE_SIZE = 50
HOME_CARDS = ("sourced_revenue", "influenced_revenue", "leads_generated", "opportunities_sourced")


@require_GET
@partner_required
def home(request: PartnerRequest) -> HttpResponse:
    partner = request.partner
    model = ProgramSettings.load().attribution_model
    periods = kpi_selectors.available_periods(Grain.YEAR, attribution_model=model)
    current = period_of(timezone.localdate(), Grain.YEAR)
    year = next((p for p in periods if p <= current.label), current.label)

    period = parse_period(year)  # a published label or the current year: always a year
    registrations = visible_registrations(request.user)
    by_status = dict(registrations.order_by().values_list("status").annotate(n=Count("pk")))
    return render(
        request,
        "portal/home.html",
        {
            "partner": partner,
            "period": period,
            "period_in_progress": period.label == current.label,
            "cards": kpi_selectors.cards(
                period, HOME_CARDS, scope=Scope.PARTNER, scope_key=partner.export_key, attribution_model=model
            ),
            "cohort": kpi_selectors.partner_cohort_values(
                partner.pk, ("first_sales", "ttfs_median_days"), attribution_model=model
            ),
            "deals_won": visible_deals(request.user).filter(status=Deal.Status.WON).count(),
            "registration_counts": [
                (label, by_status.get(value, 0)) for value, label in DealRegistration.Status.choices
            ],
            "recent_registrations": registrations.select_related("account", "deal").order_by("-submitted_at")[
                :5
            ],
        },
    )


def _conflict_warnings(partner, domain: str) -> list[dict]:
    """Other partners' protected claims on the domain, without naming them (that is staff-only)."""

    conflicts = registration_conflicts(partner=partner, domain=domain).order_by("submitted_at")[:5]
    return [
        {"submitted_at": c.submitted_at, "protection_expires_at": c.protection_expires_at, "status": c.status}
        for c in conflicts
    ]


@partner_required
def register(request: PartnerRequest) -> HttpResponse:
    """Register a deal in two steps: "Check" shows any duplicate claim, "Submit" registers.

    A form with errors comes back with everything typed still in it.
    """

    form = DealRegistrationForm(request.POST or None)
    warnings: list[dict] = []
    checked = False
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        warnings = _conflict_warnings(request.partner, data["domain"])
        checked = True
        if request.POST.get("action") == "submit":
            try:
                registration = registration_submit(
                    partner=request.partner,
                    account_name=data["account_name"],
                    domain=data["domain"],
                    amount=data["amount"],
                    expected_close_date=data["expected_close_date"],
                    notes=data["notes"],
                    submitted_by=request.user,
                )
            except ValidationError as error:
                add_service_errors(form, error)
            else:
                if registration.conflict_with_id:
                    messages.warning(
                        request,
                        f"Registration for {data['account_name']} submitted. Another partner already claims "
                        "this customer, so a partner manager will review the conflict.",
                    )
                else:
                    messages.success(
                        request, f"Registration for {data['account_name']} submitted for review."
                    )
                return redirect("portal:registrations")
    status = 400 if request.method == "POST" and form.errors else 200
    return render(
        request,
        "portal/register.html",
        {"form": form, "warnings": warnings, "checked": checked},
        status=status,
    )


@require_GET
@partner_required
def conflicts_json(request: PartnerRequest) -> JsonResponse:
    """The duplicate warning the register form fetches while the partner types the domain."""
    domain = normalise_domain(request.GET.get("domain", ""))
    if "." not in domain:
        return JsonResponse({"domain": domain, "conflicts": []})
    warnings = _conflict_warnings(request.partner, domain)
    return JsonResponse(
        {
            "domain": domain,
            "conflicts": [
                {
                    "submitted_at": w["submitted_at"].isoformat(),
                    "protection_expires_at": w["protection_expires_at"].isoformat()
                    if w["protection_expires_at"]
                    else None,
                    "status": w["status"],
                }
                for w in warnings
            ],
        }
    )


@require_GET
@partner_required
def registrations(request: PartnerRequest) -> HttpResponse:
    rows = (
        visible_registrations(request.user).select_related("account", "deal").order_by("-submitted_at", "-id")
    )
    page = Paginator(rows, PORTAL_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request, "portal/registrations.html", {"registrations": page, "page": page, "now": timezone.now()}
    )


@require_GET
@partner_required
def registration_detail(request: PartnerRequest, registration_id: int) -> HttpResponse:
    registration = get_object_or_404(
        visible_registrations(request.user).select_related("account", "deal"), pk=registration_id
    )
    history = registration_history(registration=registration, partner=request.partner)
    return render(
        request,
        "portal/registration_detail.html",
        {"registration": registration, "history": history, "now": timezone.now()},
    )


@require_GET
@partner_required
def deals(request: PartnerRequest) -> HttpResponse:
    rows = (
        visible_deals(request.user).select_related("account", "registration").order_by("-created_at", "-id")
    )
    page = Paginator(rows, PORTAL_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/deals.html",
        {"deals": page, "page": page, "partner": request.partner, "now": timezone.now()},
    )


@require_GET
@partner_required
def deal_detail(request: PartnerRequest, deal_id: int) -> HttpResponse:
    deal = get_object_or_404(visible_deals(request.user).select_related("account"), pk=deal_id)
    touches = visible_touches(request.user).filter(deal=deal).order_by("touched_at")
    return render(
        request, "portal/deal_detail.html", {"deal": deal, "touches": touches, "partner": request.partner}
    )
