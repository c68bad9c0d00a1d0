"""Pipeline (registrations, influenced opportunities) and cost metrics (cost, CAC, ROI)."""

from datetime import date
from decimal import Decimal

import pytest

from kpis.services import cost_entry_create
from tests.support import kpis as t

pytestmark = pytest.mark.django_db

D = Decimal


def test_registrations_give_leads_opportunities_and_approval_rate():
    web = t.join_source("web")
    a, b = t.partner("a", web), t.partner("b", web)
    t.registration(a, submitted="2026-03-01 10:00", status="approved", decided="2026-03-02 10:00")
    t.registration(a, submitted="2026-03-03 10:00", status="approved", decided="2026-03-04 10:00")
    t.registration(a, submitted="2026-03-05 10:00", status="rejected", decided="2026-04-01 10:00")
    t.registration(b, submitted="2026-03-06 10:00")
    t.recompute()
    assert t.value("leads_generated", "2026-03") == D("4")
    assert t.value("opportunities_sourced", "2026-03") == D("2")
    assert t.value("registration_approval_rate", "2026-03") == D("1.0000")
    assert t.value("registration_approval_rate", "2026-04") == D("0.0000")
    assert t.value("registration_approval_rate", "2026-Q1") == D("1.0000")
    assert t.value("registration_approval_rate", "2026") == D("0.6667")
    assert t.value("leads_generated", "2026-03", scope="partner", key="a") == D("3")
    assert t.value("leads_generated", "2026-03", scope="join_source", key="web") == D("4")
    assert t.value("registration_approval_rate", "2026-03", scope="partner", key="b") is None


def test_cac_divides_cost_by_new_partner_sourced_customers():
    web = t.join_source("web")
    a = t.partner("a", web)
    cost_entry_create(date=date(2026, 3, 15), amount="1000.00", category="mdf")
    for _ in range(20):
        t.deal("150.00", created="2026-03-01 00:00", closed="2026-03-20 00:00", sourced_by=a)
    t.recompute()
    assert t.value("new_customers_sourced", "2026-03") == D("20")
    assert t.value("cac", "2026-03") == D("50.00")
    # ROI: (3000 sourced - 1000 cost) / 1000.
    assert t.value("roi", "2026-03") == D("2.0000")


def test_cac_is_undefined_without_new_customers_and_roi_without_cost():
    web = t.join_source("web")
    a = t.partner("a", web)
    cost_entry_create(date=date(2026, 3, 15), amount="500.00", category="tooling", partner=a)
    t.deal("100.00", created="2026-04-01 00:00", closed="2026-04-02 00:00", sourced_by=a)
    t.recompute()
    assert t.value("program_cost", "2026-03") == D("500.00")
    assert t.value("cac", "2026-03") is None
    assert t.value("roi", "2026-03") == D("-1.0000")
    assert t.value("roi", "2026-04") is None
    assert t.value("cac", "2026-04") == D("0.00")
    assert t.value("program_cost", "2026-03", scope="partner", key="a") == D("500.00")
    assert t.value("cac", "2026-03", scope="partner", key="a") is None


def test_a_new_customer_is_an_account_whose_first_ever_won_deal_was_partner_sourced():
    web = t.join_source("web")
    a, b = t.partner("a", web), t.partner("b", web)
    old = t.account("old")
    t.deal("10.00", created="2026-01-01 00:00", closed="2026-01-05 00:00", acct=old)  # direct first
    t.deal("10.00", created="2026-03-01 00:00", closed="2026-03-05 00:00", acct=old, sourced_by=a)
    tie = t.account("tie")
    # Same closed_at: the lowest key wins (k-1 sourced by B).
    t.deal("10.00", created="2026-03-01 00:00", closed="2026-03-06 00:00", acct=tie, key="k-2", sourced_by=a)
    t.deal("10.00", created="2026-03-01 00:00", closed="2026-03-06 00:00", acct=tie, key="k-1", sourced_by=b)
    lost_first = t.account("lost-first")
    t.deal("10.00", created="2026-02-01 00:00", closed="2026-02-05 00:00", acct=lost_first, status="lost")
    t.deal("10.00", created="2026-03-01 00:00", closed="2026-03-07 00:00", acct=lost_first, sourced_by=a)
    t.recompute()
    assert t.value("new_customers_sourced", "2026-03") == D("2")
    assert t.value("new_customers_sourced", "2026-03", scope="partner", key="a") == D("1")
    assert t.value("new_customers_sourced", "2026-03", scope="partner", key="b") == D("1")


def test_a_join_source_counts_costs_tagged_with_it_or_its_partners_once():
    web, event = t.join_source("web"), t.join_source("event", kind="event")
    a = t.partner("a", web)
    cost_entry_create(date=date(2026, 3, 1), amount="100.00", category="mdf", partner=a)
    cost_entry_create(date=date(2026, 3, 1), amount="20.00", category="mdf", join_source=web)
    cost_entry_create(date=date(2026, 3, 1), amount="3.00", category="mdf", partner=a, join_source=web)
    cost_entry_create(date=date(2026, 3, 1), amount="4.00", category="mdf", partner=a, join_source=event)
    cost_entry_create(date=date(2026, 3, 1), amount="0.50", category="tooling")
    t.recompute()
    assert t.value("program_cost", "2026-03") == D("127.50")
    assert t.value("program_cost", "2026-03", scope="partner", key="a") == D("107.00")
    assert t.value("program_cost", "2026-03", scope="join_source", key="web") == D("127.00")
    assert t.value("program_cost", "2026-03", scope="join_source", key="event") == D("4.00")
    assert t.value("program_cost", "2026-Q1", scope="join_source", key="web") == D("127.00")


def test_cost_entries_refuse_non_positive_amounts():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as err:
        cost_entry_create(date=date(2026, 3, 1), amount="0", category="mdf")
    assert "amount" in err.value.message_dict


def test_rates_round_half_away_from_zero_to_four_places():
    web = t.join_source("web")
    a = t.partner("a", web)
    cost_entry_create(date=date(2026, 5, 1), amount="3200.00", category="incentive")
    t.deal("3100.00", created="2026-05-01 00:00", closed="2026-05-02 00:00", sourced_by=a)
    for _ in range(31):
        t.deal("1.00", created="2026-05-01 00:00", closed="2026-05-02 00:00", sourced_by=a, status="lost")
    t.recompute()
    assert t.value("win_rate_sourced", "2026-05") == D("0.0313")  # 1 / 32 = 0.03125
    assert t.value("roi", "2026-05") == D("-0.0313")  # (3100 - 3200) / 3200 = -0.03125
