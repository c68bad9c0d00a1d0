"""Periods and days in a non-UTC program time zone."""

from decimal import Decimal

import pytest

from tests.support import kpis as t

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def berlin():
    return t.program(time_zone="Europe/Berlin")


def test_a_deal_closed_late_on_march_31_utc_belongs_to_april_in_berlin(berlin):
    web = t.join_source("web")
    a = t.partner("a", web)
    # 22:30 UTC on 31 March is 00:30 on 1 April in Berlin (CEST, UTC+2).
    t.deal("100.00", created="2026-03-01 10:00", closed="2026-03-31 22:30", sourced_by=a)
    # 21:59 UTC is still 23:59 on 31 March.
    t.deal("7.00", created="2026-03-01 10:00", closed="2026-03-31 21:59", sourced_by=a)
    t.recompute()
    assert t.value("sourced_revenue", "2026-04") == D("100.00")
    assert t.value("sourced_revenue", "2026-03") == D("7.00")
    assert t.value("sourced_revenue", "2026-Q2") == D("100.00")
    assert t.value("sourced_revenue", "2026-Q1") == D("7.00")


def test_new_years_eve_in_utc_is_already_next_year_in_berlin(berlin):
    web = t.join_source("web")
    a = t.partner("a", web, joined="2025-01-01")
    t.deal("5.00", created="2025-12-01 10:00", closed="2025-12-31 23:30", sourced_by=a)
    t.recompute()
    assert t.value("sourced_revenue", "2026") == D("5.00")
    assert t.value("sourced_revenue", "2025") == D("0.00")
    assert t.value("sourced_revenue", "2026-01", scope="partner", key="a") == D("5.00")


def test_days_are_whole_calendar_days_between_local_dates(berlin):
    web = t.join_source("web")
    a = t.partner("a", web, joined="2026-03-01")
    # Created 23:30 UTC on 1 March (= 2 March 00:30 local), closed 22:59 UTC on 2 March (23:59 local):
    # the same local day, 0 days — in UTC it would be 1.
    t.deal("1.00", created="2026-03-01 23:30", closed="2026-03-02 21:59", sourced_by=a)
    # Across the DST change (29 March): 28 March 12:00 local -> 30 March 12:00 local = 2 days.
    t.deal("1.00", created="2026-03-28 11:00", closed="2026-03-30 10:00", sourced_by=a)
    t.recompute()
    assert t.value("sales_cycle_median_days_sourced", "2026-03") == D("1.0")  # median of 0 and 2
    # First sale closed on 2 March local, joined 1 March: 1 day.
    assert t.value("ttfs_median_days", "2026-03") == D("1.0")
