"""Every page and API endpoint costs the same number of SQL queries whatever the data (issue #19).

One program (tests/support/program.py) is built once for the module, inside a transaction rolled
back at its end: partners with deals, touches, registrations, costs, targets, commission plans and
entries, a payout batch, MDF budgets, requests and claims, webhook deliveries, invitations,
applications, API tokens, and a published KPI run. Every page is requested as each role that uses
it and its queries counted; then two more units of every kind of row are added (three times the
rows on every page), the KPIs recomputed, and every page counted again. A page whose count grew
queries once per row (an N+1).

PAGES lists every URL name of the dashboards, the portal and /api/v1/; EXEMPT names the others with
the reason. test_every_page_is_listed_or_exempt fails for a new URL that is in neither.
"""

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from auditlog.models import LogEntry
from django.core.cache import caches
from django.db import connection, transaction
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver

from api.models import ApiToken
from deals.models import Deal, DealRegistration, Touch
from economics.models import CommissionEntry, CommissionPlan, Payout, PayoutBatch
from integrations.models import WebhookDelivery, WebhookEndpoint
from interchange.models import ImportJob
from kpis.drilldown import DRILLABLE, drillable
from kpis.metrics import Scope
from kpis.models import CostEntry, ExplorerPeriod, ExplorerRow, KpiRun, KpiValue, Target
from kpis.selectors import published_values
from mdf.models import MdfBudget, MdfClaim, MdfRequest
from partners.models import Invitation, JoinSource, Partner, PartnerUser
from tests.support.program import World, program_grow, program_setup

# pytest-django sets up the test database only for modules whose tests ask for it.
pytestmark = pytest.mark.django_db

YEAR = "2026"  # every row of the program lies in 2026; the pages are asked for the year
NAMESPACES = ("dashboards", "portal", "api")


# --- The pages -----------------------------------------------------------------------------------
STAFF, ADMIN, MEMBER, SALESOPS = "manager", "admin", "member", "salesops"
BOTH_PORTAL = (ADMIN, MEMBER)


@dataclass(frozen=True)
class Page:
    name: str
    url: Callable[[World], str]
    roles: tuple[str, ...]
    label: str = ""
    # Pages whose N+1 lives in code another change owns (reconciled by the lead): the reason names it.
    xfail: str = ""
    # The count may differ with what kinds of rows the page shows, but never grows with how many.
    at_most: bool = False


def _first(model, **filters) -> int:
    return model.objects.filter(**filters).order_by("pk").values_list("pk", flat=True).first()


def _latest(model, **filters) -> int:
    return model.objects.filter(**filters).order_by("-pk").values_list("pk", flat=True).first()


def _main_payout(w: World) -> int:
    return _latest(Payout, partner=w.main)


def _main_claimed_request(w: World) -> int:
    return _first(MdfRequest, partner=w.main, claims__isnull=False)


def _fixed(path: str) -> Callable[[World], str]:
    return lambda w: path


P = f"?period={YEAR}"  # drill-downs and the API
Y = f"?grain=year&period={YEAR}"  # the dashboards' period form
API = "/api/v1"

PAGES: list[Page] = [
    # Staff dashboards
    Page("dashboards:overview", _fixed(f"/dashboard/{Y}"), (STAFF, SALESOPS)),
    Page("dashboards:join_sources", _fixed(f"/dashboard/join-sources/{Y}"), (STAFF,)),
    Page("dashboards:partners", _fixed(f"/dashboard/partners/{Y}"), (STAFF,)),
    Page("dashboards:partners", _fixed(f"/dashboard/partners/{Y}&format=csv"), (STAFF,), "csv"),
    Page("dashboards:partner_detail", lambda w: f"/dashboard/partners/{w.main.pk}/{Y}", (STAFF,)),
    Page("dashboards:applications", _fixed("/dashboard/applications/"), (STAFF,)),
    Page("dashboards:registrations", _fixed("/dashboard/registrations/"), (STAFF,)),
    Page("dashboards:attribution", _fixed(f"/dashboard/attribution/{Y}"), (STAFF,)),
    Page("dashboards:reconciliation", _fixed("/dashboard/reconciliation/"), (STAFF, SALESOPS)),
    # One query per kind of object the page's entries name (at most one per audited model).
    Page("dashboards:audit", _fixed("/dashboard/audit/"), (STAFF,), at_most=True),
    Page("dashboards:audit", _fixed("/dashboard/audit/?object_type=deals.deal"), (STAFF,), "deals"),
    Page("dashboards:deals", _fixed("/dashboard/deals/"), (STAFF,)),
    Page("dashboards:deal_detail", lambda w: f"/dashboard/deals/{w.main_deal.pk}/", (STAFF,)),
    Page("dashboards:heatmap", _fixed("/dashboard/insights/heat-map/"), (STAFF,)),
    Page("dashboards:forecast", _fixed("/dashboard/insights/forecast/"), (STAFF,)),
    Page("dashboards:mdf_budgets", _fixed("/dashboard/mdf/?quarter=2026-Q2"), (STAFF,)),
    Page("dashboards:mdf_requests", _fixed("/dashboard/mdf/requests/"), (STAFF,)),
    Page("dashboards:mdf_claims", _fixed("/dashboard/mdf/claims/"), (STAFF,)),
    Page("dashboards:webhooks", _fixed("/dashboard/webhooks/"), (STAFF,)),
    Page(
        "dashboards:webhook_detail",
        lambda w: f"/dashboard/webhooks/{_first(WebhookEndpoint)}/",
        (STAFF,),
    ),
    Page("dashboards:commission_plans", _fixed("/dashboard/commissions/plans/"), (STAFF,)),
    Page("dashboards:commission_plan_new", _fixed("/dashboard/commissions/plans/new/"), (STAFF,)),
    Page(
        "dashboards:commission_plan_edit",
        lambda w: f"/dashboard/commissions/plans/{_first(CommissionPlan)}/",
        (STAFF,),
    ),
    Page("dashboards:commission_review", _fixed("/dashboard/commissions/review/"), (STAFF,)),
    Page("dashboards:payout_batches", _fixed("/dashboard/payouts/"), (STAFF,)),
    Page("dashboards:payout_batch", lambda w: f"/dashboard/payouts/{_latest(PayoutBatch)}/", (STAFF,)),
    Page(
        "dashboards:payout_batch_export",
        lambda w: f"/dashboard/payouts/{_latest(PayoutBatch)}/export.csv",
        (STAFF,),
    ),
    Page(
        "dashboards:payout_statement",
        lambda w: f"/dashboard/payouts/statements/{_main_payout(w)}/",
        (STAFF,),
    ),
    Page(
        "dashboards:payout_statement",
        lambda w: f"/dashboard/payouts/statements/{_main_payout(w)}/?format=csv",
        (STAFF,),
        "csv",
    ),
    Page("dashboards:drill", _fixed(f"/dashboard/drill/attributed_revenue/{P}&format=csv"), (STAFF,), "csv"),
    Page("portal:drill", _fixed(f"/portal/drill/attributed_revenue/{P}&format=csv"), (ADMIN,), "csv"),
    Page("dashboards:run_status", lambda w: f"/dashboard/runs/{_latest(KpiRun)}/status.json", (STAFF,)),
    # Partner portal
    Page("portal:home", _fixed("/portal/"), BOTH_PORTAL),
    Page("portal:register", _fixed("/portal/register/"), BOTH_PORTAL),
    Page(
        "portal:conflicts",
        lambda w: "/portal/register/conflicts.json?domain=" + w.main_registration.account.domain,
        BOTH_PORTAL,
    ),
    Page("portal:registrations", _fixed("/portal/registrations/"), BOTH_PORTAL),
    Page(
        "portal:registration_detail",
        lambda w: f"/portal/registrations/{w.main_registration.pk}/",
        BOTH_PORTAL,
    ),
    Page("portal:deals", _fixed("/portal/deals/"), BOTH_PORTAL),
    Page("portal:deal_detail", lambda w: f"/portal/deals/{w.main_deal.pk}/", BOTH_PORTAL),
    Page("portal:users", _fixed("/portal/users/"), (ADMIN,)),
    Page("portal:profile", _fixed("/portal/profile/"), (ADMIN,)),
    Page("portal:forecast", _fixed("/portal/forecast/"), (ADMIN,)),
    Page("portal:earnings", _fixed("/portal/earnings/"), (ADMIN,)),
    Page(
        "portal:earnings_statement",
        lambda w: f"/portal/earnings/statements/{_main_payout(w)}/",
        (ADMIN,),
    ),
    Page(
        "portal:earnings_statement",
        lambda w: f"/portal/earnings/statements/{_main_payout(w)}/?format=csv",
        (ADMIN,),
        "csv",
    ),
    Page("portal:funds", _fixed("/portal/funds/"), (ADMIN,)),
    Page("portal:funds_request_new", _fixed("/portal/funds/requests/new/"), (ADMIN,)),
    Page("portal:funds_request", lambda w: f"/portal/funds/requests/{_main_claimed_request(w)}/", (ADMIN,)),
    # API: the KPI read endpoints
    Page("api:api-root", _fixed(f"{API}/"), (STAFF, ADMIN)),
    Page(
        "api:kpi-attribution",
        _fixed(f"{API}/kpi-attribution/?period_from=2026-01-01&period_to=2026-12-31"),
        (STAFF,),
    ),
    Page("api:kpi-heat-map", _fixed(f"{API}/kpi-heat-map/"), (STAFF,)),
    Page("api:kpi-forecast", _fixed(f"{API}/kpi-forecast/"), (STAFF,)),
    Page("api:kpi-export", _fixed(f"{API}/kpi-export/"), (STAFF,)),
    Page("api:reconciliation", _fixed(f"{API}/reconciliation/"), (STAFF,)),
    Page("api:changes", _fixed(f"{API}/changes/?limit=1000"), (STAFF,)),
    Page("api:import-job", lambda w: f"{API}/imports/jobs/{ImportJob.objects.get().pk}/", (STAFF,)),
    Page(
        "api:webhook-deliveries",
        lambda w: f"{API}/webhooks/{_first(WebhookEndpoint)}/deliveries/",
        (STAFF,),
    ),
    Page(
        "api:registration-conflicts",
        lambda w: f"{API}/registrations/conflicts/?domain={w.main_registration.account.domain}",
        (STAFF, ADMIN),
    ),
    Page("api:payout-statement", lambda w: f"{API}/payouts/{_main_payout(w)}/statement/", (STAFF, ADMIN)),
]

# API resources: (basename, path, the object a detail reads, roles). Partner roles read their own rows.
RESOURCES: list[tuple[str, str, Callable[[World], int], tuple[str, ...]]] = [
    ("join-source", "join-sources", lambda w: _first(JoinSource), (STAFF,)),
    ("partner", "partners", lambda w: w.main.pk, (STAFF, ADMIN)),
    ("partner-user", "partner-users", lambda w: _first(PartnerUser, partner=w.main), (STAFF, ADMIN)),
    ("account", "accounts", lambda w: w.main_deal.account_id, (STAFF, ADMIN)),
    ("registration", "registrations", lambda w: w.main_registration.pk, (STAFF, ADMIN)),
    ("deal", "deals", lambda w: w.main_deal.pk, (STAFF, ADMIN)),
    ("touch", "touches", lambda w: _first(Touch, partner=w.main), (STAFF, ADMIN)),
    ("cost", "costs", lambda w: _first(CostEntry, partner=w.main), (STAFF,)),
    ("target", "targets", lambda w: _first(Target, partner=w.main), (STAFF,)),
    (
        "kpi-value",
        "kpi-values",
        lambda w: published_values(grain="month", partner_id=w.main.pk).order_by("pk")[0].pk,
        (STAFF, ADMIN),
    ),
    ("kpi-run", "kpi-runs", lambda w: _latest(KpiRun), (STAFF,)),
    ("webhook", "webhooks", lambda w: _first(WebhookEndpoint), (STAFF,)),
    ("commission-plan", "commission-plans", lambda w: _first(CommissionPlan), (STAFF,)),
    (
        "commission-entry",
        "commission-entries",
        lambda w: _first(CommissionEntry, partner=w.main),
        (STAFF, ADMIN),
    ),
    ("payout-batch", "payout-batches", lambda w: _latest(PayoutBatch), (STAFF,)),
    ("payout", "payouts", _main_payout, (STAFF, ADMIN)),
    ("mdf-budget", "mdf-budgets", lambda w: _first(MdfBudget, partner=w.main), (STAFF,)),
    ("mdf-request", "mdf-requests", _main_claimed_request, (STAFF, ADMIN)),
    ("mdf-claim", "mdf-claims", lambda w: _first(MdfClaim, request__partner=w.main), (STAFF, ADMIN)),
]
for _basename, _path, _pk, _roles in RESOURCES:
    _filter = "?grain=year&scope=partner&metric=sourced_revenue" if _path == "kpi-values" else ""
    PAGES.append(Page(f"api:{_basename}-list", _fixed(f"{API}/{_path}/{_filter}"), _roles))
    PAGES.append(
        Page(f"api:{_basename}-detail", (lambda p, f: lambda w: f"{API}/{p}/{f(w)}/")(_path, _pk), _roles)
    )
PAGES.append(Page("api:api-token-list", _fixed(f"{API}/auth/tokens/"), (STAFF, ADMIN)))

# Drill-downs: every drillable metric, for the program and the main partner (staff) and the partner.
for _metric in sorted(DRILLABLE):
    if drillable(_metric, Scope.PROGRAM):
        PAGES.append(Page("dashboards:drill", _fixed(f"/dashboard/drill/{_metric}/{P}"), (STAFF,), _metric))
        PAGES.append(
            Page("api:kpi-drilldown", _fixed(f"{API}/kpi-drilldown/{_metric}/{P}"), (STAFF,), _metric)
        )
    if drillable(_metric, Scope.PARTNER):
        PAGES.append(
            Page(
                "dashboards:drill",
                (lambda mt: lambda w: f"/dashboard/drill/{mt}/{P}&partner={w.main.pk}")(_metric),
                (STAFF,),
                f"{_metric}-partner",
            )
        )
        PAGES.append(Page("portal:drill", _fixed(f"/portal/drill/{_metric}/{P}"), BOTH_PORTAL, _metric))

EXEMPT: dict[str, str] = {
    "dashboards:recompute": "POST only: queues a KPI run",
    "dashboards:release_run": "POST only",
    "dashboards:invite_partner_admin": "POST only",
    "dashboards:payout_batch_paid": "POST only",
    "portal:user_access": "POST only",
    "portal:revoke_invitation": "POST only",
    "api:program-import": "POST only: an upload",
    "api:program-import-progress": "reads the cache, never the database",
    "api:schema": "generated from the code; reads no rows",
    "api:swagger-ui": "a static page that loads the schema",
    "api:redoc": "a static page that loads the schema",
    "api:not-found": "the API's 404 for unknown paths",
    "api:api-token-detail": "DELETE only",
}
# Router actions that only write.
EXEMPT.update(
    {
        f"api:{name}": "POST only"
        for name in [
            "partner-approve",
            "partner-reject",
            "partner-set-status",
            "account-bulk",
            "registration-bulk",
            "registration-approve",
            "registration-override",
            "registration-reject",
            "deal-bulk",
            "deal-close",
            "touch-bulk",
            "webhook-replay",
            "webhook-send-test",
            "commission-entry-approve",
            "commission-entry-decline",
            "payout-batch-mark-paid",
            "mdf-request-approve",
            "mdf-request-claim-deadline",
            "mdf-request-reject",
            "mdf-claim-approve",
            "mdf-claim-files",
            "mdf-claim-reimburse",
            "mdf-claim-reject",
        ]
    }
)

# Lists: their body must be longer the second time, or the second count saw no more rows.
LISTS = {
    *(
        f"dashboards:{name}"
        for name in [
            "join_sources",
            "partners",
            "applications",
            "registrations",
            "deals",
            "deal_detail",
            "mdf_budgets",
            "mdf_requests",
            "mdf_claims",
            "webhooks",
            "webhook_detail",
            "commission_plans",
            "commission_review",
            "payout_batches",
            "payout_batch",
            "payout_batch_export",
            "payout_statement",
            "attribution",
            "heatmap",
        ]
    ),
    *(
        f"portal:{name}"
        for name in [
            "registrations",
            "deals",
            "deal_detail",
            "users",
            "earnings",
            "earnings_statement",
            "funds",
        ]
    ),
    *(page.name for page in PAGES if page.name.endswith("-list")),
    "api:changes",
    "api:webhook-deliveries",
    "api:payout-statement",
}
OWN_ROW_ONLY = {("api:partner-list", ADMIN), ("api:kpi-value-list", ADMIN)}  # a partner sees its own row

CASES = [(page, role) for page in PAGES for role in page.roles]


def _case_id(page: Page, role: str) -> str:
    return f"{page.name}{'[' + page.label + ']' if page.label else ''}-{role}"


# --- Measuring -----------------------------------------------------------------------------------
def _count(client: Client, url: str) -> tuple[int, list[str], int]:
    for cache in caches.all():  # the API caches KPI responses and throttle counters
        cache.clear()
    # The attribution explorer stores a period's rows on its first read after a publication (a new
    # run: cold in the second round, warm from the warm-up in the first): both rounds count that read.
    ExplorerRow.objects.all().delete()
    ExplorerPeriod.objects.all().delete()
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
    statements = [query["sql"] for query in ctx.captured_queries]
    return response.status_code, [sql for sql in statements if not _FEED_HORIZON.search(sql)], len(body)


# The change feed's horizon (events.changes.visible_horizon) looks further only while some
# transaction on the server is in flight: other sessions' work, not the page's rows, decides that.
_FEED_HORIZON = re.compile(r"pg_roles|pg_stat_clear_snapshot|pg_stat_activity")


def _measure(w: World, clients: dict[str, Client], warmed: set) -> dict[str, tuple[str, int, list[str], int]]:
    counts = {}
    for page, role in CASES:
        url = page.url(w)
        if (page.name, role) not in warmed:  # what a process loads once (content types, settings)
            clients[role].get(url)
            warmed.add((page.name, role))
        counts[_case_id(page, role)] = (url, *_count(clients[role], url))
    return counts


def _rows(w: World) -> dict[str, int]:
    """How many rows the pages show, to check the second count saw more of each."""
    latest_batch = _latest(PayoutBatch)
    return {
        "partners": Partner.objects.count(),
        "applications": Partner.objects.filter(status="applied").count(),
        "partner users": PartnerUser.objects.filter(partner=w.main).count(),
        "invitations": Invitation.objects.filter(partner=w.main).count(),
        "deals": Deal.objects.filter(sourcing_partner=w.main).count(),
        "touches of the main deal": Touch.objects.filter(deal=w.main_deal).count(),
        "registrations": DealRegistration.objects.filter(partner=w.main).count(),
        "conflicts": DealRegistration.objects.filter(conflict_with__isnull=False).count(),
        "costs": CostEntry.objects.count(),
        "targets": Target.objects.count(),
        "partners with kpi values": KpiValue.objects.filter(scope="partner", run=_latest(KpiRun))
        .values("partner")
        .distinct()
        .count(),
        "commission plans": CommissionPlan.objects.count(),
        "commission entries": CommissionEntry.objects.filter(partner=w.main).count(),
        "payouts of the latest batch": Payout.objects.filter(batch=latest_batch).count(),
        "lines of the main statement": Payout.objects.get(pk=_main_payout(w)).lines.count(),
        "mdf requests": MdfRequest.objects.filter(partner=w.main).count(),
        "mdf claims": MdfClaim.objects.filter(request__partner=w.main).count(),
        "webhook endpoints": WebhookEndpoint.objects.count(),
        "deliveries of the first endpoint": WebhookDelivery.objects.filter(
            endpoint=_first(WebhookEndpoint)
        ).count(),
        "trail entries": LogEntry.objects.count(),
        "api tokens": ApiToken.objects.filter(user=w.admin).count(),
    }


@pytest.fixture(scope="module")
def measured(django_db_setup, django_db_blocker):
    """({case id: ((url, status, queries) with 1 unit, the same with 3 units)}, (rows, rows))."""
    from django.conf import settings

    local = {
        alias: {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"qc-{alias}"}
        for alias in settings.CACHES
    }
    with override_settings(CACHES=local), django_db_blocker.unblock(), transaction.atomic():
        w = program_setup()
        clients, warmed = {}, set()
        for role, user in ((STAFF, w.manager), (SALESOPS, w.salesops), (ADMIN, w.admin), (MEMBER, w.member)):
            clients[role] = Client()
            clients[role].force_login(user)
        program_grow(w, 1, payout_month=8)
        small, small_rows = _measure(w, clients, warmed), _rows(w)
        program_grow(w, 2, payout_month=9)
        big, big_rows = _measure(w, clients, warmed), _rows(w)
        transaction.set_rollback(True)
    return {key: (small[key], big[key]) for key in small}, (small_rows, big_rows)


@pytest.mark.parametrize(
    ("page", "role"),
    [
        pytest.param(
            p, r, id=_case_id(p, r), marks=[pytest.mark.xfail(strict=True, reason=p.xfail)] if p.xfail else []
        )
        for p, r in CASES
    ],
)
def test_queries_do_not_grow_with_the_rows(measured, page: Page, role: str) -> None:
    (url, status, small, size), (big_url, big_status, big, big_size) = measured[0][_case_id(page, role)]
    assert (status, big_status) == (200, 200), f"{url} / {big_url} as {role}"
    if page.name in LISTS and (page.name, role) not in OWN_ROW_ONLY:
        assert big_size > size, f"{big_url} as {role} shows no more with 3 units of rows than with 1"
    assert len(big) <= len(small) if page.at_most else len(big) == len(small), (
        f"{big_url} as {role}: {len(small)} queries with 1 unit of rows, {len(big)} with 3; "
        f"the queries that repeat more:\n" + "\n".join(_repeated(small, big))
    )


def _repeated(small: list[str], big: list[str]) -> list[str]:
    """The queries (their first 300 characters, literals and all) that ran more often the second time."""
    shape = lambda sql: re.sub(r"'[^']*'|\b\d+\b", "?", sql)[:300]  # noqa: E731
    before = Counter(map(shape, small))
    return [f"{n - before[q]} more x {q}" for q, n in Counter(map(shape, big)).items() if n > before[q]]


def _url_names(resolver: URLResolver, namespace: str = "") -> set[str]:
    names = set()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            inner = (
                f"{namespace}:{pattern.namespace}" if namespace and pattern.namespace else pattern.namespace
            )
            names |= _url_names(pattern, inner or namespace)
        elif isinstance(pattern, URLPattern) and pattern.name and namespace in NAMESPACES:
            names.add(f"{namespace}:{pattern.name}")
    return names


def test_every_page_is_listed_or_exempt() -> None:
    listed = {page.name for page in PAGES}
    names = _url_names(get_resolver())
    assert names - listed - set(EXEMPT) == set(), "a new page: add it to PAGES (or to EXEMPT, with why)"
    assert (listed | set(EXEMPT)) - names == set(), "PAGES or EXEMPT name a URL that is gone"
    assert not listed & set(EXEMPT)


def test_the_second_count_saw_at_least_twice_the_rows(measured) -> None:
    # Else an equal count proves nothing.
    small, big = measured[1]
    assert {name: (small[name], big[name]) for name in small if big[name] < 2 * small[name]} == {}
    assert min(small.values()) > 0, small
