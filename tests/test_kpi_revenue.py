"""Revenue, win rate, deal size and sales cycle metrics on small programs computed by hand."""

from decimal import Decimal

import pytest

from tests.support import kpis as t

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def march_program():
    """March 2026: sourced $300 won + $100 lost by A; influenced $200 touched by A and B (both of
    source web) and $50 touched by A and C (source event); direct $450 won; one direct lost."""
    web, event = t.join_source("web"), t.join_source("event", kind="event")
    a, b, c = t.partner("a", web), t.partner("b", web), t.partner("c", event)
    t.deal("300.00", created="2026-03-01 10:00", closed="2026-03-11 10:00", sourced_by=a)
    t.deal("100.00", created="2026-03-01 10:00", closed="2026-03-12 10:00", status="lost", sourced_by=a)
    x = t.deal("200.00", created="2026-02-20 10:00", closed="2026-03-02 10:00")
    t.touch(x, a, "2026-02-21 10:00")
    t.touch(x, b, "2026-03-01 10:00")
    y = t.deal("50.00", created="2026-03-01 10:00", closed="2026-03-05 10:00")
    t.touch(y, a, "2026-03-02 10:00")
    t.touch(y, c, "2026-03-03 10:00")
    t.deal("450.00", created="2026-03-01 10:00", closed="2026-03-04 10:00")
    t.deal("10.00", created="2026-03-01 10:00", closed="2026-03-04 10:00", status="lost")
    t.recompute()


def test_program_revenue_splits_into_sourced_influenced_and_direct(march_program):
    assert t.value("won_revenue", "2026-03") == D("1000.00")
    assert t.value("sourced_revenue", "2026-03") == D("300.00")
    assert t.value("influenced_revenue", "2026-03") == D("250.00")
    assert t.value("attributed_revenue", "2026-03") == D("550.00")
    assert t.value("sourced_share", "2026-03") == D("0.3000")
    assert t.value("avg_deal_size_sourced", "2026-03") == D("300.00")
    assert t.value("avg_deal_size_influenced", "2026-03") == D("125.00")
    assert t.value("avg_deal_size_direct", "2026-03") == D("450.00")
    assert t.value("win_rate_sourced", "2026-03") == D("0.5000")
    assert t.value("win_rate_influenced", "2026-03") == D("1.0000")
    assert t.value("win_rate_direct", "2026-03") == D("0.5000")


def test_a_partner_counts_the_full_amount_of_every_influenced_deal_it_touched(march_program):
    assert t.value("influenced_revenue", "2026-03", scope="partner", key="a") == D("250.00")
    assert t.value("influenced_revenue", "2026-03", scope="partner", key="b") == D("200.00")
    assert t.value("influenced_revenue", "2026-03", scope="partner", key="c") == D("50.00")
    assert t.value("sourced_revenue", "2026-03", scope="partner", key="a") == D("300.00")
    assert t.value("win_rate_sourced", "2026-03", scope="partner", key="a") == D("0.5000")


def test_a_join_source_counts_a_deal_touched_by_two_of_its_partners_once(march_program):
    assert t.value("influenced_revenue", "2026-03", scope="join_source", key="web") == D("250.00")
    assert t.value("influenced_revenue", "2026-03", scope="join_source", key="event") == D("50.00")
    # X was touched in Feb (A) and March (A, B); Y in March: web influenced 2 deals in March, 1 in Feb.
    assert t.value("opportunities_influenced", "2026-03", scope="join_source", key="web") == D("2")
    assert t.value("opportunities_influenced", "2026-02", scope="join_source", key="web") == D("1")
    assert t.value("opportunities_influenced", "2026-Q1", scope="join_source", key="web") == D("2")
    assert t.value("opportunities_influenced", "2026-Q1") == D("2")


def test_revenue_per_active_partner_divides_partner_revenue_by_active_partners(march_program):
    # Active in March (activity within the 90 days to 2026-03-31): A, B, C.
    assert t.value("active_partners", "2026-03") == D("3")
    assert t.value("revenue_per_active_partner", "2026-03") == D("183.33")


def test_partner_rows_without_facts_are_not_stored(march_program):
    assert t.value("sourced_revenue", "2026-03", scope="partner", key="b") is None
    assert t.value("win_rate_sourced", "2026-03", scope="partner", key="b") is None
    # Program and join-source rows are dense: zero where nothing happened.
    assert t.value("won_revenue", "2026-02") == D("0.00")
    assert t.value("sourced_revenue", "2026-03", scope="join_source", key="event") == D("0.00")


@pytest.fixture
def quarter_program():
    """Sourced by A: Jan one won (10 days); Feb two won (30 and 41 days) and three lost."""
    web = t.join_source("web")
    a = t.partner("a", web, joined="2025-12-01")
    t.deal("100.00", created="2026-01-01 09:00", closed="2026-01-11 09:00", sourced_by=a)
    t.deal("100.00", created="2026-01-10 09:00", closed="2026-02-09 09:00", sourced_by=a)
    t.deal("100.00", created="2025-12-31 09:00", closed="2026-02-10 09:00", sourced_by=a)
    for _ in range(3):
        t.deal("100.00", created="2026-02-01 09:00", closed="2026-02-10 09:00", status="lost", sourced_by=a)
    t.recompute()


def test_quarter_ratios_are_recomputed_from_summed_parts_not_averaged(quarter_program):
    assert t.value("win_rate_sourced", "2026-01") == D("1.0000")
    assert t.value("win_rate_sourced", "2026-02") == D("0.4000")
    # 3 won / 6 closed = 0.5, not the mean of the monthly rates (0.7).
    assert t.value("win_rate_sourced", "2026-Q1") == D("0.5000")
    assert t.value("win_rate_sourced", "2026") == D("0.5000")
    assert t.value("win_rate_sourced", "2026-Q1", scope="partner", key="a") == D("0.5000")
    assert t.value("win_rate_sourced", "2026-Q1", scope="join_source", key="web") == D("0.5000")
    assert t.value("sourced_revenue", "2026-Q1") == D("300.00")


def test_medians_of_a_quarter_are_recomputed_from_the_deals(quarter_program):
    assert t.value("sales_cycle_median_days_sourced", "2026-01") == D("10.0")
    # Two deals: the median of 30 and 41 days ends in .5.
    assert t.value("sales_cycle_median_days_sourced", "2026-02") == D("35.5")
    # Median of 10, 30, 41 — not the mean of the monthly medians (22.75).
    assert t.value("sales_cycle_median_days_sourced", "2026-Q1") == D("30.0")
    assert t.value("sales_cycle_median_days_sourced", "2026-Q1", scope="partner", key="a") == D("30.0")


def test_sales_cycle_medians_by_segment(march_program):
    assert t.value("sales_cycle_median_days_direct", "2026-03") == D("3.0")
    assert t.value("sales_cycle_median_days_influenced", "2026-03") == D("7.0")  # 10 and 4 days
    assert t.value("sales_cycle_median_days_sourced", "2026-03") == D("10.0")


def test_opportunities_influenced_counts_each_deal_once_per_period_of_every_grain_and_scope():
    """D1 touched by A in January, February and April; D2 by A and B (both web) and C (event) in
    March; D3 by C in December 2025 and January 2026. All open."""
    web, event = t.join_source("web"), t.join_source("event", kind="event")
    a, b = t.partner("a", web, joined="2025-01-01"), t.partner("b", web, joined="2025-01-01")
    c = t.partner("c", event, joined="2025-01-01")
    d1 = t.deal("10.00", created="2025-12-01 10:00")
    d2 = t.deal("10.00", created="2025-12-01 10:00")
    d3 = t.deal("10.00", created="2025-12-01 10:00")
    for when in ("2026-01-10 10:00", "2026-02-10 10:00", "2026-04-10 10:00"):
        t.touch(d1, a, when)
    t.touch(d2, a, "2026-03-05 10:00")
    t.touch(d2, b, "2026-03-06 10:00")
    t.touch(d2, c, "2026-03-07 10:00")
    t.touch(d3, c, "2025-12-20 10:00")
    t.touch(d3, c, "2026-01-05 10:00")
    t.recompute()
    expected = {
        ("partner", "a"): {
            "2026-01": 1,
            "2026-02": 1,
            "2026-03": 1,
            "2026-04": 1,
            "2026-Q1": 2,
            "2026-Q2": 1,
            "2026": 2,
        },
        ("partner", "b"): {"2026-03": 1, "2026-Q1": 1, "2026": 1},
        ("partner", "c"): {
            "2025-12": 1,
            "2026-01": 1,
            "2026-03": 1,
            "2025-Q4": 1,
            "2026-Q1": 2,
            "2025": 1,
            "2026": 2,
        },
        ("join_source", "web"): {"2026-02": 1, "2026-03": 1, "2026-Q1": 2, "2026-Q2": 1, "2026": 2},
        ("join_source", "event"): {"2025-12": 1, "2026-03": 1, "2026-Q1": 2, "2026": 2, "2025": 1},
        ("program", ""): {
            "2025-12": 1,
            "2026-01": 2,
            "2026-03": 1,
            "2025-Q4": 1,
            "2026-Q1": 3,
            "2026-Q2": 1,
            "2026": 3,
        },
    }
    for (scope, key), values in expected.items():
        for period, count in values.items():
            got = t.value("opportunities_influenced", period, scope=scope, key=key)
            assert got == D(count), (scope, key, period, got)
