"""Staff pages: thin views that read the published KPI set and call the domain services."""

import csv
from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any, TypedDict
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from dashboards import charts
from dashboards.drilldown_views import add_chart_links
from dashboards.filters import SORTS, PartnerLeaderboardFilter
from dashboards.forms import PeriodForm
from dashboards.onboarding_views import PARTNER_PAGE_RELATED, partner_people_context
from dashboards.permissions import staff_required
from dashboards.selection import CardRequest, PartnerGroupForm, RangeForm, build_cards, sort_links
from deals.models import Deal, DealRegistration, Touch
from deals.selectors import PartnerDealList, visible_deals
from kpis import readers as kpi_readers
from kpis import recovery
from kpis.formatting import export_string
from kpis.metrics import Scope
from kpis.models import KpiRun, ReconciliationItem
from kpis.periods import Period, period_or_none
from kpis.ranges import (
    MonthRange,
    Selection,
    annotate_partner_range_values,
    span_param,
    trend_window,
    with_trends,
)
from kpis.reconciliation import (
    reconciliation_counts,
    reconciliation_item,
    reconciliation_names,
    reconciliation_queryset,
)
from kpis.selectors import active_run, kpi_series, latest_successful_run
from kpis.services import kpi_recompute_request
from partners import access
from partners.models import JoinSource, Partner
from prm.http import AuthenticatedRequest
from program.models import ProgramSettings

OVERVIEW_CARDS = (
    "sourced_revenue",
    "influenced_revenue",
    "attributed_revenue",
    "sourced_share",
    "active_partners",
    "activation_rate",
    "ttfs_median_days",
    "cac",
    "roi",
    "win_rate_sourced",
    "win_rate_influenced",
    "win_rate_direct",
)

LEADERBOARD_METRICS = (
    "sourced_revenue",
    "influenced_revenue",
    "attributed_revenue",
    "win_rate_sourced",
    "leads_generated",
)
PARTNER_CARDS = (
    "sourced_revenue",
    "influenced_revenue",
    "attributed_revenue",
    "win_rate_sourced",
    "leads_generated",
    "opportunities_sourced",
    "cac",
    "roi",
    # Partner economics (docs/kpis.md, "Commissions and MDF in the KPIs").
    "commission_paid",
    "commission_rate",
    "mdf_spent",
    "mdf_return",
)
# The program-wide names read wrong on one partner's page ("Program ROI" is not the program's).
PARTNER_CARD_TITLES = {"roi": "ROI (its sourced revenue against its costs)", "cac": "CAC (its new customers)"}
JOIN_SOURCE_METRICS = (
    "applications",
    "partners_joined",
    "activation_rate",
    "first_sales",
    "ttfs_median_days",
    "cac",
    "sourced_revenue",
    "program_cost",
)


def home(request: HttpRequest) -> HttpResponse:
    """Staff land on the program overview, partner users on their portal."""
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("home"))
    if access.is_staff_reader(request.user):
        return redirect("dashboards:overview")
    if access.partner_of(request.user) is not None:
        return redirect("portal:home")
    raise PermissionDenied("This login has no role in the partner program.")


def _period_context(request: HttpRequest, *, allow_range: bool = False) -> tuple[Period, dict]:
    """The period the page shows (GET `grain`, `period`) and the context every page shares; with
    `allow_range`, the custom range of months (`start`, `end`) as `span` when one is given."""
    form = PeriodForm(request.GET or None)
    grain = form.grain_value()
    settings = ProgramSettings.load()
    model = settings.attribution_model
    requested = form.period_value()
    period, periods = kpi_readers.choose_period(grain, requested, attribution_model=model)
    if requested and period_or_none(requested) is None:
        messages.warning(
            request,
            f"“{requested}” is not a period like 2026-03, 2026-Q1 or 2026; showing {period.label} instead.",
        )
    run = latest_successful_run()
    range_form = RangeForm(request.GET if allow_range and request.GET else None)
    span: Period | MonthRange = period
    if range_form.is_bound and range_form.is_valid() and range_form.cleaned_data["range"] is not None:
        span = range_form.cleaned_data["range"]
    elif range_form.is_bound:
        for error in range_form.non_field_errors():
            messages.warning(request, f"{error} Showing {period.label} instead.")
    return period, {
        "span": span,
        "range_form": range_form if allow_range else None,
        "model": model,
        "period_form": form,
        "period": period,
        "grain": grain,
        "periods": periods,
        "data_run": run,
        "currency": settings.currency,
    }


@require_GET
@staff_required
def overview(request: AuthenticatedRequest) -> HttpResponse:
    period, context = _period_context(request, allow_range=True)
    span = context["span"]
    group = PartnerGroupForm(request.GET or None)
    revenue = kpi_readers.revenue_by_month(period, attribution_model=context["model"])
    running = active_run()
    drill_scope, drill_sid = group.drill_target()
    context.update(
        group_form=group,
        group_description=group.description(),
        drill_scope=drill_scope,
        drill_sid=drill_sid,
        cards=_with_provisional_flag(
            build_cards(
                CardRequest(
                    span=span,
                    selection=group.selection(context["model"]),
                    metrics=(*OVERVIEW_CARDS, "activation_provisional"),
                )
            )
        ),
        revenue=revenue,
        revenue_chart=charts.chart(
            "revenue-chart",
            f"Revenue by month, {revenue[0].period} to {revenue[-1].period}",
            [row.period for row in revenue],
            [
                ("Sourced", [r.sourced for r in revenue]),
                ("Influenced", [r.influenced for r in revenue]),
                ("Direct", [r.direct for r in revenue]),
            ],
            stacked=True,
        ),
        active_run=running,
        active_run_stuck=running is not None and running.is_stuck(),
        can_recompute=access.can_trigger_recompute(request.user),
    )
    # Each bar opens its rows (direct revenue has no metric of its own).
    add_chart_links(
        context["revenue_chart"], ["sourced_revenue", "influenced_revenue", None], [r.period for r in revenue]
    )
    return render(request, "dashboards/overview.html", context)


def _with_provisional_flag(cards: list[kpi_readers.Card]) -> list[kpi_readers.Card]:
    """Drop the activation_provisional card and mark the activation rate card with it instead."""
    flag = next(c for c in cards if c.metric == "activation_provisional")
    shown = [c for c in cards if c is not flag]
    for card in shown:
        if card.metric == "activation_rate":
            card.provisional = bool(flag.value)  # a custom range or a group has no flag: None
    return shown


@require_POST
@staff_required
def recompute(request: AuthenticatedRequest) -> HttpResponse:
    """Queue a KPI recompute; without JS the redirect's message is the status."""
    if not access.can_trigger_recompute(request.user):
        raise PermissionDenied

    run = kpi_recompute_request(trigger=KpiRun.Trigger.MANUAL, requested_by=request.user)
    return _queued(request, run, f"KPI recompute #{run.pk} is {run.get_status_display().lower()}")


@require_POST
@staff_required
def release_run(request: AuthenticatedRequest, run_id: int) -> HttpResponse:
    """End a stuck KPI run (its worker died, or its message was lost) and queue one in its place."""
    if not access.can_trigger_recompute(request.user):
        raise PermissionDenied
    try:
        released, run = recovery.release_run(run_id, by=f"dashboard user {request.user.get_username()}")
        assert run is not None  # release_run queues a replacement unless told not to (requeue=False)
    except ValidationError as exc:
        problem = "; ".join(exc.message_dict["run"])
        if request.headers.get("X-Requested-With") == "fetch":
            return JsonResponse({"error": problem}, status=409)
        messages.error(request, problem)
        return _back(request)
    return _queued(request, run, f"KPI run #{released.pk} released; KPI recompute #{run.pk} is queued")


def _queued(request: HttpRequest, run: KpiRun, status: str) -> HttpResponse:
    """A queued run's answer: its status URL for the page's script, or a message and the way back."""
    if request.headers.get("X-Requested-With") == "fetch":
        status_url = reverse("dashboards:run_status", args=[run.pk])
        return JsonResponse({"id": run.pk, "status": run.status, "status_url": status_url}, status=202)
    messages.info(
        request, f"{status}; the numbers update when it finishes (reload this page to see its progress)."
    )
    return _back(request)


def _back(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next") or reverse("dashboards:overview")
    if not target.startswith("/") or target.startswith("//"):
        target = reverse("dashboards:overview")
    return redirect(target)


@require_GET
@staff_required
def run_status(request: AuthenticatedRequest, run_id: int) -> JsonResponse:
    run = get_object_or_404(KpiRun, pk=run_id)
    stuck = run.is_stuck()
    return JsonResponse(
        {
            "id": run.pk,
            "status": run.status,
            "status_display": run.get_status_display(),
            "done": run.status in (KpiRun.Status.SUCCEEDED, KpiRun.Status.FAILED),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "error": run.error,
            # A queued or running run that lost its worker: the page offers to release it.
            "stuck": stuck,
            "stuck_reason": recovery.describe_silence(run) if stuck else "",
            "release_url": reverse("dashboards:release_run", args=[run.pk]) if stuck else None,
        }
    )


@require_GET
@staff_required
def join_sources(request: AuthenticatedRequest) -> HttpResponse:
    period, context = _period_context(request)
    values = kpi_readers.join_source_values(
        period, (*JOIN_SOURCE_METRICS, "activated_partners"), attribution_model=context["model"]
    )
    rows: list[dict[str, Any]] = []
    for source in JoinSource.objects.order_by("name"):
        v = values.get(source.pk, {})
        # The funnel's "activated" step: the cohort's partners activated within the window.
        activated = v.get("activated_partners")
        rows.append(
            {"source": source, "values": v, "activated": None if activated is None else int(activated)}
        )
    context.update(
        rows=rows,
        metrics=JOIN_SOURCE_METRICS,
        funnel_chart=charts.chart(
            "funnel-chart",
            f"Recruitment funnel by join source, {period.label}",
            [r["source"].name for r in rows],
            [
                ("Applications", [r["values"].get("applications") for r in rows]),
                ("Joined", [r["values"].get("partners_joined") for r in rows]),
                ("Activated", [r["activated"] for r in rows]),
                ("First sale", [r["values"].get("first_sales") for r in rows]),
            ],
            value_kind="count",
            label_heading="Join source",
        ),
    )
    add_chart_links(
        context["funnel_chart"],
        ["applications", "partners_joined", "activated_partners", "first_sales"],
        [period.label] * len(rows),
        "join_source",
        [r["source"].pk for r in rows],
    )
    return render(request, "dashboards/join_sources.html", context)


def _leaderboard(request: HttpRequest, span: Period | MonthRange, model: str) -> PartnerLeaderboardFilter:
    partners = Partner.objects.select_related("join_source", "manager")
    if isinstance(span, MonthRange):  # sums over the months; win rate is undefined (kpis.ranges)
        queryset = annotate_partner_range_values(partners, span, LEADERBOARD_METRICS, attribution_model=model)
    else:
        queryset = kpi_readers.annotate_partner_values(
            partners, span, LEADERBOARD_METRICS, attribution_model=model
        )
    return PartnerLeaderboardFilter(request.GET or None, queryset=queryset)


@require_GET
@staff_required
def partners(request: AuthenticatedRequest) -> HttpResponse | StreamingHttpResponse:
    period, context = _period_context(request, allow_range=True)
    board = _leaderboard(request, context["span"], context["model"])
    if request.GET.get("format") == "csv":
        return _leaderboard_csv(board, context["span"])
    page = Paginator(board.qs, 25).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    csv_query = query.copy()
    csv_query["format"] = "csv"
    current_sort, descending = board.sorting()
    links = sort_links(
        query, SORTS, current=current_sort, descending=descending, ascending_first=("name", "joined")
    )
    context.update(
        sort_links=links,
        filter=board,
        page=page,
        query=query.urlencode(),
        csv_query=csv_query.urlencode(),
        sorts=SORTS,
        metrics=LEADERBOARD_METRICS,
        # A custom range's cells open the rows of its months; win rate ("—" over a range) has no link.
        drill_period=span_param(context["span"]),
    )
    return render(request, "dashboards/partners.html", context)


class _Echo:
    """csv.writer target that hands each formatted line back (for a streamed response)."""

    def write(self, line: str) -> str:
        return line


def _leaderboard_csv(board: PartnerLeaderboardFilter, period: Period | MonthRange) -> StreamingHttpResponse:
    """Streamed: one line per partner as the rows come from the database (10,000 partners and more)."""
    writer = csv.writer(_Echo())
    header = [
        "partner_key",
        "name",
        "type",
        "tier",
        "status",
        "join_source",
        "manager",
        "period",
        *LEADERBOARD_METRICS,
    ]

    def lines():
        yield writer.writerow(header)
        for p in board.qs.iterator(chunk_size=1000):
            yield writer.writerow(
                [
                    p.export_key,
                    p.name,
                    p.type,
                    p.tier,
                    p.status,
                    p.join_source.name,
                    p.manager.get_username() if p.manager else "",  # the login: a stable key
                    period.label,
                    *(export_string(m, getattr(p, f"kpi_{m}")) for m in LEADERBOARD_METRICS),
                ]
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="partners-{period.label.replace(" ", "-")}.csv"'
    return response


@require_GET
@staff_required
def partner_detail(request: AuthenticatedRequest, partner_id: int) -> HttpResponse:
    partner = get_object_or_404(
        access.visible_partners(request.user).select_related(
            "join_source", "manager", "referred_by", *PARTNER_PAGE_RELATED
        ),
        pk=partner_id,
    )
    period, context = _period_context(request)
    revenue = kpi_readers.revenue_by_month(
        period,
        scope=Scope.PARTNER,
        partner_id=partner.pk,
        metrics=("sourced_revenue", "influenced_revenue", "attributed_revenue"),
        attribution_model=context["model"],
    )
    base = visible_deals(request.user).select_related("account", "sourcing_partner")
    deals = PartnerDealList(partner, base=base)[:50]
    registrations = list(
        DealRegistration.objects.filter(partner=partner)
        .select_related("account", "deal", "decided_by")
        .order_by("-submitted_at", "-id")[:50]
    )
    touches = list(
        Touch.objects.filter(partner=partner)
        .select_related("deal__account")
        .order_by("-touched_at", "-id")[:50]
    )
    cards = with_trends(
        kpi_readers.cards(
            period,
            PARTNER_CARDS,
            scope=Scope.PARTNER,
            scope_key=partner.export_key,
            attribution_model=context["model"],
        ),
        trend_window(period),
        Selection(scope=Scope.PARTNER, scope_key=partner.export_key, attribution_model=context["model"]),
    )
    for card in cards:
        card.title = PARTNER_CARD_TITLES.get(card.metric, "")
    context.update(
        partner=partner,
        cards=cards,
        cohort=kpi_readers.partner_cohort_values(
            partner.pk, ("first_sales", "ttfs_median_days"), attribution_model=context["model"]
        ),
        revenue=revenue,
        revenue_chart=charts.chart(
            "partner-revenue-chart",
            f"{partner.name}: revenue by month",
            [r.period for r in revenue],
            [
                ("Sourced", [r.sourced for r in revenue]),
                ("Influenced", [r.influenced for r in revenue]),
                ("Attributed", [r.attributed for r in revenue]),
            ],
            line_series=("Attributed",),
        ),
        monthly=_partner_monthly(partner, revenue, context["model"]),
        deals=deals,
        registrations=registrations,
        touches=touches,
        timeline=_timeline(partner, deals, registrations, touches),
        **partner_people_context(request, partner),
    )
    add_chart_links(
        context["revenue_chart"],
        ["sourced_revenue", "influenced_revenue", "attributed_revenue"],
        [r.period for r in revenue],
        "partner",
        [partner.pk] * len(revenue),
    )
    return render(request, "dashboards/partner_detail.html", context)


PARTNER_MONTHLY = ("leads_generated", "opportunities_sourced", "win_rate_sourced", "new_customers_sourced")


def _partner_monthly(partner: Partner, revenue: list, model: str) -> list[dict]:
    """The partner's monthly KPIs over the chart's months, newest first (one query)."""
    series = kpi_series(
        metrics=PARTNER_MONTHLY,
        grain="month",
        period_from=revenue[0].period,
        period_to=revenue[-1].period,
        scope=Scope.PARTNER,
        scope_key=partner.export_key,
        attribution_model=model,
    )
    rows = []
    for i, month in enumerate(revenue):
        rows.append({"revenue": month, **{m: series[m][i]["value"] for m in PARTNER_MONTHLY}})
    return rows[::-1]


def _as_moment(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class TimelineEvent(TypedDict):
    at: datetime
    text: str
    kind: str


def _timeline(
    partner: Partner,
    deals: Iterable[Deal],
    registrations: Iterable[DealRegistration],
    touches: Iterable[Touch],
) -> list[TimelineEvent]:
    """The partner's recent activity, newest first, from rows already loaded for the page."""
    events: list[TimelineEvent] = []
    if partner.joined_at:
        events.append({"at": _as_moment(partner.joined_at), "text": "Joined the program", "kind": "joined"})
    events.append({"at": _as_moment(partner.applied_at), "text": "Applied", "kind": "applied"})
    for r in registrations:
        events.append(
            {
                "at": r.submitted_at,
                "text": f"Registered {r.account.name} ({r.amount})",
                "kind": "registration",
            }
        )
        if r.decided_at:
            events.append(
                {
                    "at": r.decided_at,
                    "text": f"Registration for {r.account.name} {r.get_status_display().lower()}",
                    "kind": "decision",
                }
            )
    for d in deals:
        if d.sourcing_partner_id == partner.pk:
            events.append(
                {
                    "at": d.created_at,
                    "text": f"Sourced deal {d.name or d.pk} ({d.account.name})",
                    "kind": "deal",
                }
            )
        if d.closed_at:
            events.append(
                {
                    "at": d.closed_at,
                    "text": f"Deal {d.name or d.pk} {d.get_status_display().lower()}",
                    "kind": "close",
                }
            )
    for t in touches:
        events.append(
            {"at": t.touched_at, "text": f"{t.get_kind_display()} on {t.deal.account.name}", "kind": "touch"}
        )
    events.sort(key=lambda e: e["at"], reverse=True)
    return events[:40]


RECONCILIATION_PAGE_SIZE = 50


class CountedPaginator(Paginator):
    """A paginator told its count (already known from a grouped count), so it runs no COUNT(*)."""

    def __init__(self, object_list, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self._known_count = count

    @property
    def count(self) -> int:
        return self._known_count


@require_GET
@staff_required
def reconciliation(request: AuthenticatedRequest) -> HttpResponse:
    """The stored report, a page at a time (it grows with the program: tens of thousands of items at
    1M deals), optionally one kind only."""
    counts = reconciliation_counts()
    kind = request.GET.get("kind", "")
    if kind not in ReconciliationItem.Kind.values:
        kind = ""
    total = counts.get(kind, 0) if kind else sum(counts.values())
    paginator = CountedPaginator(reconciliation_queryset(kind or None), RECONCILIATION_PAGE_SIZE, count=total)
    page = paginator.get_page(request.GET.get("page"))
    names = reconciliation_names(page.object_list)
    context = {
        "facts": [_linked(reconciliation_item(item, names), names) for item in page],
        "page": page,
        "query": urlencode({"kind": kind}) if kind else "",
        "kind": kind,
        "kinds": [(value, label, counts.get(value, 0)) for value, label in ReconciliationItem.Kind.choices],
        "total": sum(counts.values()),
    }
    return render(request, "dashboards/reconciliation.html", context)


_ADMIN_LINKS = {
    "deal": ("admin:deals_deal_change", "Deal"),
    "touch": ("admin:deals_touch_change", "Touch"),
    "registrations": ("admin:deals_dealregistration_change", "Registration"),
    "account": ("admin:deals_account_change", "Account"),
}


def _linked(fact: dict, names: dict[tuple[str, int], str]) -> dict:
    """The fact with a link per row it involves, by name: partner pages for partners, admin pages
    otherwise."""
    links = []
    for kind, ids in (fact.get("ids") or {}).items():
        for pk in ids if isinstance(ids, list | tuple) else [ids]:
            if kind == "partner":
                links.append(
                    {
                        "label": f"Partner {names.get(('partner', pk), f'#{pk}')}",
                        "url": reverse("dashboards:partner_detail", args=[pk]),
                    }
                )
            elif kind in _ADMIN_LINKS:
                name, text = _ADMIN_LINKS[kind]
                try:
                    url = reverse(name, args=[pk])
                except NoReverseMatch:  # a model without an admin page is listed without a link
                    url = ""
                links.append({"label": f"{text} {names.get((kind, pk), f'#{pk}')}", "url": url})
    return {**fact, "links": links}
