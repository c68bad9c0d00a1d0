"""Partner lifecycle: recruitment, activation cohorts, active partners, time to first sale."""

from datetime import date
from decimal import Decimal

import pytest

from kpis.models import KpiValue
from partners.models import Partner
from tests.support import kpis as t
from tests.test_kpi_incremental import full_recompute_set, incremental
from tests.test_kpi_runs import published

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def january_cohort():
    """Four partners of source web joined in January 2026, one rejected applicant, one of source event."""
    web, event = t.join_source("web"), t.join_source("event", kind="event")
    p1 = t.partner("p1", web, joined="2026-01-10", applied="2025-12-20")
    p2 = t.partner("p2", web, joined="2026-01-15", applied="2026-01-02")
    p3 = t.partner("p3", web, joined="2026-01-20", applied="2026-01-03")
    p4 = t.partner("p4", event, joined="2026-01-25", applied="2026-01-04")
    t.partner("rejected", web, joined=None, applied="2026-01-05")
    # p1 activates exactly 90 days after joining (inside the window), p2 after 91 (outside).
    t.registration(p1, submitted="2026-04-10 12:00")
    t.registration(p2, submitted="2026-04-16 12:00")
    # p4's only activity predates its joining: it never counts.
    t.registration(p4, submitted="2026-01-24 12:00")
    return p1, p2, p3, p4


def test_activation_rate_counts_partners_activated_within_the_window(january_cohort):
    t.recompute(as_of="2026-06-30")
    assert t.value("partners_joined", "2026-01") == D("4")
    assert t.value("activation_rate", "2026-01") == D("0.2500")
    assert t.value("activation_provisional", "2026-01") == D("0")
    assert t.value("activation_rate", "2026-01", scope="join_source", key="web") == D("0.3333")
    assert t.value("activation_rate", "2026-01", scope="join_source", key="event") == D("0.0000")


def test_a_cohort_is_provisional_while_a_partner_is_inside_its_window(january_cohort):
    # On 2026-04-20, p3 (joined 01-20) is 90 days in: still inside; p4 (01-25) too.
    t.recompute(as_of="2026-04-20")
    assert t.value("activation_provisional", "2026-01") == D("1")
    assert t.value("activation_provisional", "2026-01", scope="join_source", key="web") == D("1")
    t.recompute(as_of="2026-04-25")
    # p3 is out (95 days); p4 at exactly 90 days is still inside.
    assert t.value("activation_provisional", "2026-01", scope="join_source", key="web") == D("0")
    assert t.value("activation_provisional", "2026-01") == D("1")


def test_recruitment_counts_applications_by_applied_month(january_cohort):
    t.recompute(as_of="2026-06-30")
    assert t.value("applications", "2026-01") == D("4")
    assert t.value("applications", "2025-12") == D("1")
    # Of January's applications (p2, p3, p4, rejected) three were approved.
    assert t.value("approval_rate_partners", "2026-01") == D("0.7500")
    assert t.value("approval_rate_partners", "2026-01", scope="join_source", key="web") == D("0.6667")
    assert t.value("approval_rate_partners", "2026-Q1") == D("0.7500")
    assert t.value("applications", "2026") == D("4")


def test_active_partners_look_back_90_days_from_the_periods_last_day():
    web = t.join_source("web")
    early, edge, never = (t.partner(k, web, joined="2025-10-01") for k in ("early", "edge", "never"))
    # The 90 days ending 2026-04-30 start on 2026-01-31.
    t.registration(early, submitted="2026-01-30 12:00")
    t.registration(edge, submitted="2026-01-31 12:00")
    t.recompute(as_of="2026-06-30")
    assert t.value("active_partners", "2026-01") == D("2")
    assert t.value("active_partners", "2026-04") == D("1")
    assert t.value("active_partners", "2026-05") == D("0")
    # A quarter counts the partners active in the 90 days to its last day (2026-03-31).
    assert t.value("active_partners", "2026-Q1") == D("2")
    assert t.value("active_partners", "2026-Q2") == D("0")
    assert t.value("active_partners", "2026-04", scope="join_source", key="web") == D("1")
    assert never.pk


def test_time_to_first_sale_is_keyed_by_cohort_and_leaves_out_partners_without_a_sale():
    web = t.join_source("web")
    p = {
        k: t.partner(k, web, joined="2026-01-10")
        for k in ("one", "eleven", "thirty", "sixty", "none", "late")
    }
    t.deal("10.00", created="2026-01-01 00:00", closed="2026-01-11 12:00", sourced_by=p["one"])
    t.deal("10.00", created="2026-01-01 00:00", closed="2026-01-21 12:00", sourced_by=p["eleven"])
    t.deal("10.00", created="2026-01-01 00:00", closed="2026-02-09 12:00", sourced_by=p["thirty"])
    # A won deal closed before joining is no first sale; the influenced one 60 days after is.
    t.deal("10.00", created="2025-12-01 00:00", closed="2026-01-05 12:00", sourced_by=p["sixty"])
    influenced = t.deal("10.00", created="2026-01-01 00:00", closed="2026-03-11 12:00")
    t.touch(influenced, p["sixty"], "2026-01-15 00:00")
    # A sale after the as-of date does not count yet.
    t.deal("10.00", created="2026-01-01 00:00", closed="2026-07-01 12:00", sourced_by=p["late"])
    t.recompute(as_of="2026-06-30")
    assert t.value("first_sales", "2026-01") == D("4")
    assert t.value("ttfs_median_days", "2026-01") == D("20.5")  # 1, 11, 30, 60
    assert t.value("ttfs_mean_days", "2026-01") == D("25.5")
    assert t.value("ttfs_median_days", "2026-Q1") == D("20.5")
    assert t.value("ttfs_median_days", "2026-01", scope="partner", key="sixty") == D("60.0")
    assert t.value("first_sales", "2026-01", scope="partner", key="sixty") == D("1")
    assert t.value("first_sales", "2026-01", scope="partner", key="none") is None
    assert t.value("ttfs_mean_days", "2026-01", scope="join_source", key="web") == D("25.5")


def activated(period: str) -> tuple:
    """activated_partners of the program, web and event in `period`, and whether a partner row exists."""
    return (
        t.value("activated_partners", period),
        t.value("activated_partners", period, scope="join_source", key="web"),
        t.value("activated_partners", period, scope="join_source", key="event"),
        KpiValue.objects.filter(metric="activated_partners", scope="partner").exists(),
    )


@pytest.mark.django_db(transaction=True)  # a chunked run's sessions read the committed data
@pytest.mark.parametrize(
    "chunks", [pytest.param(1, id="whole"), pytest.param(2, id="chunked", marks=pytest.mark.postgres)]
)
def test_activated_partners_counts_the_cohort_activated_within_the_window(january_cohort, settings, chunks):
    """The activation rate's numerator, by join period, for the program and each join source (no
    partner rows): p1 activated 90 days after joining (inside the window), p2 after 91, p3 never,
    p4 only before it joined. Incremental runs (patched cells, then recomputed periods) and chunked
    runs publish what a full run from scratch publishes."""
    settings.KPI_CHUNKS = chunks
    _, _, p3, p4 = january_cohort
    assert t.recompute(as_of="2026-06-30").status == "succeeded"
    assert activated("2026-01") == (D("1"), D("1"), D("0"), False)
    assert activated("2026-Q1") == (D("1"), D("1"), D("0"), False)
    assert activated("2026") == (D("1"), D("1"), D("0"), False)
    # A period without a cohort counts 0 (a count, unlike the rate, which is undefined there).
    assert activated("2026-02") == (D("0"), D("0"), D("0"), False)
    assert t.value("activation_rate", "2026-02") is None

    # p3 registers a deal 40 days after joining: activated. p4 joins again in March, and is active
    # within its window from then (the registration of 01-24 still predates it).
    t.registration(p3, submitted="2026-03-01 12:00")
    Partner.objects.filter(pk=p4.pk).update(joined_at=date(2026, 3, 2))
    t.registration(p4, submitted="2026-05-30 12:00")
    run = incremental(as_of="2026-06-30")
    assert run.changed_rows == 3
    assert activated("2026-01") == (D("2"), D("2"), D("0"), False)
    assert activated("2026-03") == (D("1"), D("0"), D("1"), False)
    assert activated("2026-Q1") == (D("3"), D("2"), D("1"), False)
    assert t.value("activation_rate", "2026-Q1") == D("0.7500")
    after = published()
    assert full_recompute_set(as_of="2026-06-30") == after

    # A later as-of date adds a period: the next incremental run recomputes the changed periods.
    t.registration(p3, submitted="2026-07-02 12:00")
    incremental(as_of="2026-07-31")
    assert activated("2026-01") == (D("2"), D("2"), D("0"), False)
    after = published()
    assert full_recompute_set(as_of="2026-07-31") == after
