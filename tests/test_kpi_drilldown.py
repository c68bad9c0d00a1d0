"""Drill-down: the rows behind every published value add up to it (kpis.drilldown), per family,
scope and grain, on a small program computed by hand."""

from datetime import date
from decimal import Decimal

import pytest

from kpis import drilldown
from kpis.costs import book_program_cost
from kpis.metrics import METRICS_BY_NAME
from kpis.models import CostEntry, KpiValue
from kpis.periods import parse_period
from kpis.services import cost_entry_create
from tests.support import kpis as t

pytestmark = pytest.mark.django_db

D = Decimal


def build_program() -> dict:
    """Q1 2026. Join sources web (A, B) and event (C); D applied in March, never approved.
    March: A sources $300 won (cycle 10 days) and $100 lost; X ($200, won 2 Mar) touched by A
    (21 Feb) and B (1 Mar); Y ($50, won 5 Mar) touched by A and C; a direct $450 won and a $10
    lost. Registrations: A two approved in March, one rejected in April; B one submitted.
    Costs: $1,000 MDF in March (program), $500 tagged A in March; booked by the program: a $30
    commission payout to A and a $40 MDF reimbursement to C whose activity produced Y."""
    web, event = t.join_source("web"), t.join_source("event", kind="event")
    a = t.partner("a", web, joined="2026-01-10")
    b = t.partner("b", web, joined="2026-02-01")
    c = t.partner("c", event, joined="2026-01-20")
    t.partner("d", web, joined=None, applied="2026-03-03")
    t.deal("300.00", created="2026-03-01 10:00", closed="2026-03-11 10:00", sourced_by=a)
    t.deal("100.00", created="2026-03-01 10:00", closed="2026-03-12 10:00", status="lost", sourced_by=a)
    x = t.deal("200.00", created="2026-02-20 10:00", closed="2026-03-02 10:00")
    t.touch(x, a, "2026-02-21 10:00")
    t.touch(x, b, "2026-03-01 10:00")
    y = t.deal("50.00", created="2026-03-01 10:00", closed="2026-03-05 10:00")
    t.touch(y, a, "2026-03-02 10:00")
    t.touch(y, c, "2026-03-03 10:00")
    t.touch(y, c, "2026-03-09 10:00")  # after Y closed: does not count
    t.deal("450.00", created="2026-03-01 10:00", closed="2026-03-04 10:00")
    t.deal("10.00", created="2026-03-01 10:00", closed="2026-03-04 10:00", status="lost")
    t.registration(a, submitted="2026-03-01 10:00", status="approved", decided="2026-03-02 10:00")
    t.registration(a, submitted="2026-03-03 10:00", status="approved", decided="2026-03-04 10:00")
    t.registration(a, submitted="2026-03-05 10:00", status="rejected", decided="2026-04-01 10:00")
    t.registration(b, submitted="2026-03-06 10:00")
    cost_entry_create(date=date(2026, 3, 15), amount="1000.00", category="mdf")
    cost_entry_create(date=date(2026, 3, 20), amount="500.00", category="tooling", partner=a)
    book_program_cost(
        source=CostEntry.Source.COMMISSION_PAYOUT,
        reference="payout:1",
        date=date(2026, 3, 31),
        amount=D("30.00"),
        category=CostEntry.Category.COMMISSION,
        partner=a,
    )
    book_program_cost(
        source=CostEntry.Source.MDF_REIMBURSEMENT,
        reference="mdf-claim:1",
        date=date(2026, 3, 25),
        amount=D("40.00"),
        category=CostEntry.Category.MDF,
        partner=c,
        deal_ids=[y.pk],
    )
    t.recompute(as_of="2026-04-15")
    return {"web": web, "event": event, "a": a, "b": b, "c": c}


@pytest.fixture
def program():
    return build_program()


def sid_of(value: KpiValue) -> int:
    return value.partner_id or value.join_source_id or 0


def test_every_published_value_equals_what_its_rows_add_up_to(program):
    facts = drilldown.published_facts()
    values = KpiValue.objects.filter(target_metric="", period__startswith="2026")
    checked = 0
    for v in values:
        q = drilldown.Query(v.metric, v.scope, sid_of(v), parse_period(v.period))
        got = drilldown.rows_add_up_to(facts, q)
        assert got == v.value, (v.metric, v.scope, v.scope_key, v.period, got, v.value)
        checked += 1
    assert checked > 300
    # Every metric family was exercised.
    assert {v.metric for v in values} >= set(drilldown.PARTS)


def rows(metric: str, period: str, scope: str = "program", sid: int = 0, part: str = "rows", sort: str = ""):
    facts = drilldown.published_facts()
    return drilldown.page(facts, drilldown.Query(metric, scope, sid, parse_period(period), part), sort=sort)


def test_the_rows_are_the_deals_touches_partners_and_costs_computed_by_hand(program):
    a, web = program["a"], program["web"]
    influenced = rows("influenced_revenue", "2026-03", "partner", a.pk)
    assert sorted(r["amount"] for r in influenced.rows) == [D("50.00"), D("200.00")]
    attributed = rows("attributed_revenue", "2026-03", "partner", a.pk, sort="amount")
    # Linear: A gets half of X ($100) and half of Y ($25), and all of its sourced $300.
    assert [(r["segment"], r["amount"]) for r in attributed.rows] == [
        ("i", D("25.00")),
        ("i", D("100.00")),
        ("s", D("300.00")),
    ]
    assert attributed.totals.cents == 42500
    win = rows("win_rate_sourced", "2026-03", "partner", a.pk)
    assert (win.totals.rows, win.totals.counted) == (2, 1)
    opportunities = rows("opportunities_influenced", "2026-Q1", "join_source", web.pk)
    assert sorted(r["touches"] for r in opportunities.rows) == [1, 2]  # Y by A; X by A and B
    cohort = rows("activation_rate", "2026-01", "join_source", web.pk)
    assert [(r["partner"], r["activated"]) for r in cohort.rows] == [("A", date(2026, 2, 21))]
    costs = rows("program_cost", "2026-03", "join_source", web.pk, sort="amount")
    assert [r["amount"] for r in costs.rows] == [D("30.00"), D("500.00")]
    commission = rows("commission_rate", "2026-03", "partner", a.pk, part="numerator")
    assert [r["amount"] for r in commission.rows] == [D("30.00")]  # of A's $425 attributed: 0.0706
    mdf_deals = rows("mdf_return", "2026-03", "partner", program["c"].pk, part="numerator")
    assert [r["amount"] for r in mdf_deals.rows] == [D("50.00")]  # Y; over C's $40 of MDF: 1.25
    assert rows("mdf_return", "2026-03", part="denominator").totals.cents == 104000
    cycle = rows("sales_cycle_median_days_direct", "2026-03")
    assert [r["days"] for r in cycle.rows] == [3]
    cac = rows("cac", "2026-03", part="denominator")
    assert [r["amount"] for r in cac.rows] == [D("300.00")]  # the one new partner-sourced customer
    leads = rows("leads_generated", "2026-03", sort="-submitted")
    assert [r["submitted"] for r in leads.rows] == [
        date(2026, 3, 6),
        date(2026, 3, 5),
        date(2026, 3, 3),
        date(2026, 3, 1),
    ]
    assert METRICS_BY_NAME["roi"].partner


@pytest.mark.parametrize("model", ["first_touch", "last_touch", "linear", "time_decay", "position_based"])
def test_the_explorer_reads_the_published_facts_and_matches_the_computation(program, model):
    from kpis.services import attribution_by_partner as computed

    for start, end in ((date(2026, 3, 1), date(2026, 3, 31)), (date(2026, 1, 1), date(2026, 12, 31))):
        assert t.explorer_rows(model, start, end) == computed(model=model, period_from=start, period_to=end)


@pytest.mark.django_db(transaction=True)
def test_a_page_whose_state_was_dropped_meanwhile_is_read_from_the_new_one():
    from kpis import drilldown_pages

    build_program()
    stale = drilldown.published_facts()
    t.recompute(as_of="2026-04-15")  # publishes anew; its clean-up drops the previous state
    assert drilldown.published_facts().run_id != stale.run_id
    q = drilldown.Query("won_revenue", "program", 0, parse_period("2026-03"))
    page = drilldown_pages.page_context(stale, q)
    assert page["adds_up_to"] == page["published"] == D("1000.00")
