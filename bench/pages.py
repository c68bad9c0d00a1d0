"""Page benchmark: the server time of every dashboard page, drill-down and portal page (issue #19).

`python -m bench.pages` (also run by `make bench`) needs DATABASE_URL on PostgreSQL. Like
bench.kpis it works in its own database `<name>_bench` (created and migrated on first use), seeded
with `seed_demo --partners 10000 --deals 1000000` unless it already holds that many deals
(`--partners/--deals` for a smaller program: use another DATABASE_URL name for it, a different
size reseeds the bench database), with a published KPI set (a full recompute runs when there is
none). It logs in (force_login) a partner manager `bench-manager` and a partner admin of the
partner with the most sourced deals, then requests each page in-process through Django's test
Client (DEBUG off, the web role's statement timeout; no network, no gunicorn): one warm-up, then
`--runs` timed requests, then one more under CaptureQueriesContext for the number of queries, the
time they took in the database and the slowest one. It prints per page: median ms, max ms,
queries, database ms of the counted request, the target and PASS or FAIL.

Targets (issue #19, docs/benchmarks.md): every dashboard page and the first page of a drill-down
under 300 ms, the attribution explorer and the heat map under 500 ms, the portal home under 150 ms
(server time, median of warm requests). `--explain` prints EXPLAIN ANALYZE of the slowest query of
each failing page.
"""

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from bench.database import bench_database_url

DASHBOARD_MS = 300
HEAVY_MS = 500
PORTAL_HOME_MS = 150
# A page whose warm-up takes longer than this is timed over only SLOW_PAGE_RUNS requests.
SLOW_PAGE_SECONDS = 5.0
SLOW_PAGE_RUNS = 3
# Past this, one timed request, and the warm-up's queries are the ones counted.
VERY_SLOW_PAGE_SECONDS = 20.0


@dataclass(frozen=True)
class Case:
    label: str
    url: str
    user: str  # "manager" or "partner"
    target_ms: int


@dataclass
class Figures:
    runs: int
    median_ms: float
    max_ms: float
    queries: int
    db_ms: float
    slowest_sql: str
    slowest_ms: float
    slow: list[tuple[float, str]]  # the counted request's slowest queries: ms, SQL
    status: int


# --- The program ---------------------------------------------------------------------------------
def _prepare(partners: int, deals: int, reseed: bool) -> None:
    """Seed the bench program when it is not the requested size; publish KPIs when none are."""
    from django.core.management import call_command
    from django.db import connection

    from deals.models import Deal
    from kpis import drilldown
    from kpis.forecast_store import forecast_snapshot_compute, latest_snapshot
    from kpis.services import kpi_run_create, kpi_run_execute

    call_command("migrate", verbosity=0)
    # DEBUG off: templates read static files from STATIC_ROOT's manifest, like production.
    call_command("collectstatic", interactive=False, verbosity=0)
    if reseed or Deal.objects.count() != deals:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'django_migrations'"
            )
            tables = [r[0] for r in cursor.fetchall()]
            cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        call_command("seed_demo", partners=partners, deals=deals, verbosity=0)
        print(
            f"  seeded: seed_demo --partners {partners} --deals {deals} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    try:
        drilldown.published_facts()
    except drilldown.NoPublishedFacts:
        started = time.perf_counter()
        run, _ = kpi_run_create(trigger="command", mode="full")
        kpi_run_execute(run_id=run.pk)
        print(f"  published a KPI set (full recompute, {time.perf_counter() - started:.0f} s)", flush=True)
    if latest_snapshot() is None:
        # What the publication's task stores (no worker here): the forecast pages read it.
        started = time.perf_counter()
        forecast_snapshot_compute()
        print(f"  stored the pipeline forecast ({time.perf_counter() - started:.0f} s)", flush=True)
    with connection.cursor() as cursor:
        # Planner statistics must know the freshly seeded program and published KPI set.
        cursor.execute("VACUUM ANALYZE")


def _users() -> tuple[Any, Any, int]:
    """The bench's partner manager and partner admin (created once) and the admin's partner id:
    the partner with the most sourced deals (the portal's and partner page's heaviest case)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Count

    from deals.models import Deal
    from partners.models import Partner, PartnerUser
    from partners.roles import StaffRole
    from partners.services import partner_user_create, staff_user_create

    password = "page benchmark passphrase, not for production"
    user_model = get_user_model()
    manager = user_model.objects.filter(username="bench-manager").first()
    if manager is None:
        manager = staff_user_create(
            username="bench-manager",
            email="bench@example.com",
            password=password,
            role=StaffRole.PARTNER_MANAGER,
        )
    top = (
        Deal.objects.exclude(sourcing_partner=None)
        .values("sourcing_partner")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("sourcing_partner", flat=True)
        .first()
    )
    if top is None:
        sys.exit("bench.pages: the program has no partner-sourced deal")
    partner = Partner.objects.get(pk=top)
    username = f"bench-partner-{partner.pk}"
    membership = PartnerUser.objects.filter(user__username=username).first()
    if membership is None:
        membership = partner_user_create(
            partner=partner,
            username=username,
            email=f"{username}@example.com",
            password=password,
            role=PartnerUser.Role.ADMIN,
        )
    return manager, membership.user, partner.pk


def _cases(partner_id: int) -> list[Case]:
    """Every page to measure, with the ids and periods of this program."""
    from django.db.models import Count

    from deals.models import Deal, Touch
    from kpis import drilldown
    from partners.models import Partner

    as_of = drilldown.published_facts().as_of
    month = date(as_of.year, as_of.month, 1)
    last_month = date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1).strftime("%Y-%m")
    year = str(as_of.year - 1)  # the last whole year: the biggest periods a page lists
    # A won deal with the most touches: the longest timeline and attribution split.
    deal_id = (
        Touch.objects.filter(deal__status="won")
        .values("deal")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("deal", flat=True)
        .first()
    ) or Deal.objects.order_by("id").values_list("id", flat=True).first()
    # The join source with the most partners: the deal list's broadest join-source filter.
    source_id = (
        Partner.objects.exclude(join_source=None)
        .values("join_source")
        .annotate(n=Count("id"))
        .order_by("-n", "join_source")
        .values_list("join_source", flat=True)
        .first()
    )
    d, p = DASHBOARD_MS, partner_id
    cases = [
        Case("overview", "/dashboard/", "manager", d),
        Case("join sources", "/dashboard/join-sources/", "manager", d),
        Case("partners (leaderboard)", "/dashboard/partners/", "manager", d),
        Case("partner page", f"/dashboard/partners/{p}/", "manager", d),
        Case("registrations (review queue)", "/dashboard/registrations/", "manager", d),
        Case("attribution explorer", "/dashboard/attribution/", "manager", HEAVY_MS),
        Case("reconciliation", "/dashboard/reconciliation/", "manager", d),
        Case("deals", "/dashboard/deals/", "manager", d),
        Case(
            "deals, won influenced by amount",
            "/dashboard/deals/?status=won&segment=influenced&sort=amount",
            "manager",
            d,
        ),
        # The deal list's other filters and sorts (each walks an index or counts one).
        Case("deals, sourced by amount", "/dashboard/deals/?segment=sourced&sort=amount", "manager", d),
        Case(
            "deals, direct, closed last year, by name",
            f"/dashboard/deals/?segment=direct&period={year}&sort=name",
            "manager",
            d,
        ),
        Case(
            "deals, influenced, created last month, oldest first",
            f"/dashboard/deals/?segment=influenced&period={last_month}&date_basis=created&direction=asc",
            "manager",
            d,
        ),
        Case("deals, of the partner, by amount", f"/dashboard/deals/?partner={p}&sort=amount", "manager", d),
        Case(
            "deals, of the largest join source, by account",
            f"/dashboard/deals/?join_source={source_id}&sort=account",
            "manager",
            d,
        ),
        Case(
            "deals, lost, 10,000-20,000, by close",
            "/dashboard/deals/?status=lost&amount_min=10000&amount_max=20000&sort=closed",
            "manager",
            d,
        ),
        Case("deal page", f"/dashboard/deals/{deal_id}/", "manager", d),
        Case("heat map", "/dashboard/insights/heat-map/", "manager", HEAVY_MS),
        Case("heat map, quarter", "/dashboard/insights/heat-map/?grain=quarter", "manager", HEAVY_MS),
        Case("forecast", "/dashboard/insights/forecast/", "manager", d),
        # Every partner's row (10,000 at 1M deals): the API is not paginated.
        Case("forecast API", "/api/v1/kpi-forecast/", "manager", d),
        Case("audit trail", "/dashboard/audit/", "manager", d),
        Case("webhooks", "/dashboard/webhooks/", "manager", d),
        Case("applications", "/dashboard/applications/", "manager", d),
    ]
    drills = [
        ("sourced_revenue", last_month, ""),
        ("sourced_revenue", year, ""),
        ("sourced_revenue", year, f"&partner={p}"),
        ("influenced_revenue", last_month, ""),
        ("win_rate_sourced", last_month, ""),
        ("win_rate_sourced", year, f"&partner={p}"),
        ("sales_cycle_median_days_sourced", last_month, ""),
        ("sales_cycle_median_days_sourced", year, f"&partner={p}"),
        ("ttfs_median_days", year, ""),
        ("cac", last_month, ""),
        ("cac", year, f"&partner={p}"),
    ]
    for metric, period, scope in drills:
        who = "partner" if scope else "program"
        cases.append(
            Case(
                f"drill {metric} {who} {period}",
                f"/dashboard/drill/{metric}/?period={period}{scope}",
                "manager",
                d,
            )
        )
    cases += [
        Case("portal home", "/portal/", "partner", PORTAL_HOME_MS),
        Case("portal registrations", "/portal/registrations/", "partner", d),
        Case("portal deals", "/portal/deals/", "partner", d),
        Case("portal forecast", "/portal/forecast/", "partner", d),
        Case(
            f"portal drill sourced_revenue {year}",
            f"/portal/drill/sourced_revenue/?period={year}",
            "partner",
            d,
        ),
    ]
    return cases


# --- The measure ---------------------------------------------------------------------------------
def _measure(client, url: str, runs: int) -> Figures:
    """One warm-up, `runs` timed requests, one counted; a page of seconds gets fewer timed
    requests, and one of tens of seconds is counted on its warm-up (the run stays bounded)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    warm_started = time.perf_counter()
    with CaptureQueriesContext(connection) as warm:
        response = client.get(url)  # warm-up
    warm_seconds = time.perf_counter() - warm_started
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code}")
    if warm_seconds > VERY_SLOW_PAGE_SECONDS:
        runs = 1
    elif warm_seconds > SLOW_PAGE_SECONDS:
        runs = min(runs, SLOW_PAGE_RUNS)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    if warm_seconds > VERY_SLOW_PAGE_SECONDS:
        queries = warm.captured_queries
    else:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        queries = captured.captured_queries
    slow = sorted(((float(q["time"]) * 1000, q["sql"]) for q in queries), reverse=True)[:3]
    return Figures(
        runs=len(times),
        median_ms=statistics.median(times),
        max_ms=max(times),
        queries=len(queries),
        db_ms=sum(float(q["time"]) for q in queries) * 1000,
        slowest_sql=slow[0][1] if slow else "",
        slowest_ms=slow[0][0] if slow else 0.0,
        slow=slow,
        status=response.status_code,
    )


def _explain(sql: str) -> str:
    from django.db import DatabaseError, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            return "\n".join(row[0] for row in cursor.fetchall())
    except DatabaseError as exc:  # e.g. it reads a temporary table of the request's own session
        return f"    (no EXPLAIN: {str(exc).splitlines()[0]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=10_000)
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--reseed", action="store_true", help="drop the bench program and seed again")
    parser.add_argument("--runs", type=int, default=7, help="timed requests per page (after one warm-up)")
    parser.add_argument(
        "--only",
        default="",
        help="measure only the pages whose label contains one of these (comma-separated)",
    )
    parser.add_argument(
        "--prepare-only", action="store_true", help="seed and publish when needed, then stop (run it niced)"
    )
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the slowest query of a FAIL")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = bench_database_url(os.environ.get("DATABASE_URL", ""), command="bench.pages")
    os.environ.update(DEBUG="0", SECURE_SSL_REDIRECT="0", LOG_LEVEL="WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from bench.kpis import machine
    from deals.models import Deal
    from kpis.models import KpiValue
    from partners.models import Partner
    from prm import database

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"Page benchmark on {connection.settings_dict['NAME']}; {machine()}; load average: {load}", flush=True
    )
    database.set_role("command")  # seeding and publishing: no web statement timeout
    _prepare(args.partners, args.deals, args.reseed)
    manager, partner_user, partner_id = _users()
    if args.prepare_only:
        return
    only = [part.strip() for part in args.only.split(",")]
    cases = [c for c in _cases(partner_id) if any(part in c.label for part in only)]
    print(
        f"  data: {Partner.objects.count()} partners, {Deal.objects.count()} deals, "
        f"{KpiValue.objects.count()} KPI values; partner {partner_id} "
        f"({Deal.objects.filter(sourcing_partner_id=partner_id).count()} sourced deals)",
        flush=True,
    )
    database.set_role("web")  # pages as a web process runs them (its statement timeout)
    connection.close()
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    clients = {"manager": Client(), "partner": Client()}
    clients["manager"].force_login(manager)
    clients["partner"].force_login(partner_user)

    print(f"  1 warm-up + {args.runs} timed requests per page, then 1 counted (queries, db ms)", flush=True)
    header = f"  {'page':<52} {'n':>2} {'median':>8} {'max':>8} {'queries':>7} {'db ms':>8} {'target':>6}"
    print(header + "  result", flush=True)
    failed: list[tuple[Case, Figures]] = []
    errors: list[str] = []
    for case in cases:
        try:
            figures = _measure(clients[case.user], case.url, args.runs)
        except Exception as exc:  # a page that errors is a result too; go on with the others
            print(f"  {case.label:<52} ERROR {exc}", flush=True)
            errors.append(case.label)
            continue
        ok = figures.median_ms < case.target_ms
        if not ok:
            failed.append((case, figures))
        print(
            f"  {case.label:<52} {figures.runs:2d} {figures.median_ms:8.1f} {figures.max_ms:8.1f} "
            f"{figures.queries:7d} {figures.db_ms:8.1f} {case.target_ms:6d}  {'PASS' if ok else 'FAIL'}",
            flush=True,
        )
    print(f"  load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    for case, figures in failed:
        if not figures.slowest_sql:
            continue
        print(
            f"\n  {case.label} ({case.url}): {figures.queries} queries, {figures.db_ms:.1f} ms in the "
            "database; the slowest:",
            flush=True,
        )
        for ms, sql in figures.slow:
            print(f"    {ms:8.1f} ms  {' '.join(sql.split())[:400]}", flush=True)
        if args.explain:
            print(_explain(figures.slowest_sql), flush=True)
    print(f"\n  targets met by {len(cases) - len(failed) - len(errors)} of {len(cases)} pages", flush=True)
    if errors:
        sys.exit(f"pages that did not answer 200: {', '.join(errors)}")


if __name__ == "__main__":
    main()
