"""The partner portal: a partner's own numbers, registrations and deals, nothing of anyone else's."""

from datetime import date
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.selectors import registration_history
from deals.models import Deal, DealRegistration
from deals.rules import normalise_domain
from deals.selectors import (
    PartnerDealList,
    partner_deal_totals,
    registration_conflicts,
    visible_deals,
    visible_registrations,
    visible_touches,
)
from deals.services import registration_submit
from kpis import readers as kpi_readers
from kpis import selectors as kpi_selectors
from kpis.metrics import Grain, Scope
from kpis.periods import Period, period_of
from kpis.ranges import MonthRange, Selection, summed_cards
from portal.forms import DealRegistrationForm
from portal.permissions import PartnerRequest, partner_required
from prm import charts
from prm.forms import add_service_errors
from program.models import ProgramSettings, program_today

# Lists grow with the partner's history: a page at a time.
PORTAL_PAGE_SIZE = 50
HOME_CARDS = ("sourced_revenue", "influenced_revenue", "leads_generated", "opportunities_sourced")


@require_GET
@partner_required
def home(request: PartnerRequest) -> HttpResponse:
    partner = request.partner
    model = ProgramSettings.load().attribution_model
    span = year_to_date(program_today())
    selection = Selection(scope=Scope.PARTNER, scope_key=partner.export_key, attribution_model=model)
    cards = summed_cards(span, HOME_CARDS, selection)
    for card in cards:  # "so far this year" is compared with the same months of the year before
        card.previous, card.previous_label, card.year_ago = card.year_ago, "Same months last year", None
    registrations = visible_registrations(request.user)
    deal_totals = partner_deal_totals(partner)
    by_status = dict(registrations.order_by().values_list("status").annotate(n=Count("pk")))
    revenue = kpi_readers.revenue_by_month(
        Period(Grain.MONTH, span.last.index),
        scope=Scope.PARTNER,
        partner_id=partner.pk,
        metrics=("sourced_revenue", "influenced_revenue"),
        attribution_model=model,
    )
    pipeline_series = kpi_selectors.kpi_series(
        metrics=("leads_generated", "opportunities_sourced"),
        grain=Grain.MONTH,
        period_from=revenue[0].period,
        period_to=revenue[-1].period,
        scope=Scope.PARTNER,
        scope_key=partner.export_key,
        attribution_model=model,
    )
    return render(
        request,
        "portal/home.html",
        {
            "partner": partner,
            "span": span,
            "period": span,
            "hide_year_ago": True,
            "cards": cards,
            "cohort": kpi_readers.partner_cohort_values(
                partner.pk, ("first_sales", "ttfs_median_days"), attribution_model=model
            ),
            "deals_won": deal_totals["won_n"],
            "pipeline": open_pipeline(deal_totals, registrations),
            "registration_counts": [
                (label, by_status.get(value, 0)) for value, label in DealRegistration.Status.choices
            ],
            "revenue_chart": charts.chart(
                "portal-revenue-chart",
                f"Your revenue by month, {revenue[0].period} to {revenue[-1].period}",
                [r.period for r in revenue],
                [("Sourced", [r.sourced for r in revenue]), ("Influenced", [r.influenced for r in revenue])],
                stacked=True,
            ),
            "leads_chart": charts.chart(
                "portal-leads-chart",
                f"Your registrations by month, {revenue[0].period} to {revenue[-1].period}",
                [r.period for r in revenue],
                [
                    ("Leads (submitted)", [p["value"] for p in pipeline_series["leads_generated"]]),
                    (
                        "Opportunities (approved)",
                        [p["value"] for p in pipeline_series["opportunities_sourced"]],
                    ),
                ],
                value_kind="count",
            ),
        },
    )


def year_to_date(today: date) -> MonthRange:
    """The complete months of this year so far (January to last month); in January, last year.

    Published values are monthly, so "so far this year" stops at the last complete month and is
    compared with the same months a year earlier, never with a whole year (docs/dashboards.md).
    """
    last_complete = period_of(today, Grain.MONTH).previous
    first = Period(Grain.MONTH, last_complete.index - last_complete.index % 12)
    return MonthRange(first, last_complete)


def open_pipeline(deal_totals: dict, registrations: QuerySet[DealRegistration]) -> dict:
    """The partner's open deals (count and amount, sourced vs worked on, from
    `deals.selectors.partner_deal_totals`) and its pending registrations (one query)."""
    totals = {k: deal_totals[k] for k in ("sourced_n", "sourced_amount", "touched_n", "touched_amount")}
    pending = registrations.filter(status=DealRegistration.Status.SUBMITTED)
    registered = pending.aggregate(n=Count("pk"), amount=Sum("amount"))
    return {**totals, "pending_n": registered["n"], "pending_amount": registered["amount"]}


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


def _search(request: PartnerRequest, statuses: list[tuple[str, str]]) -> tuple[str, str, str]:
    """The list's search text and status (an unknown status is ignored), and the query to keep
    across pages."""
    q = request.GET.get("q", "").strip()[:100]
    status = request.GET.get("status", "")
    if status not in {value for value, _ in statuses}:
        status = ""
    kept = {k: v for k, v in (("q", q), ("status", status)) if v}
    return q, status, urlencode(kept)


@require_GET
@partner_required
def registrations(request: PartnerRequest) -> HttpResponse:
    q, status, query = _search(request, DealRegistration.Status.choices)
    rows = visible_registrations(request.user).select_related("account", "deal")
    if q:
        rows = rows.filter(Q(account__name__icontains=q) | Q(account__domain__icontains=q))
    if status:
        rows = rows.filter(status=status)
    page = Paginator(rows.order_by("-submitted_at", "-id"), PORTAL_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "portal/registrations.html",
        {
            "registrations": page,
            "page": page,
            "now": timezone.now(),
            "q": q,
            "status": status,
            "query": query,
            "statuses": DealRegistration.Status.choices,
        },
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
    q, status, query = _search(request, Deal.Status.choices)
    rows = visible_deals(request.user).select_related("account", "registration")
    listed: QuerySet[Deal] | PartnerDealList
    if q:
        rows = rows.filter(
            Q(name__icontains=q) | Q(account__name__icontains=q) | Q(account__domain__icontains=q)
        )
        if status:
            rows = rows.filter(status=status)
        listed = rows.order_by("-created_at", "-id")
    else:  # counted and paged on the partner's deal ids (docs/benchmarks.md, "Pages")
        listed = PartnerDealList(request.partner, status=status or None, base=rows)
    page = Paginator(listed, PORTAL_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/deals.html",
        {
            "deals": page,
            "page": page,
            "partner": request.partner,
            "now": timezone.now(),
            "q": q,
            "status": status,
            "query": query,
            "statuses": Deal.Status.choices,
        },
    )


@require_GET
@partner_required
def deal_detail(request: PartnerRequest, deal_id: int) -> HttpResponse:
    deal = get_object_or_404(visible_deals(request.user).select_related("account"), pk=deal_id)
    touches = visible_touches(request.user).filter(deal=deal).order_by("touched_at")
    return render(
        request, "portal/deal_detail.html", {"deal": deal, "touches": touches, "partner": request.partner}
    )
