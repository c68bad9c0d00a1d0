"""Attribution under every model, with largest-remainder cents, computed by hand."""

from datetime import date
from decimal import Decimal

import pytest

from kpis.services import attribution_by_partner
from tests.support import kpis as t

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def source():
    return t.join_source("web")


def attributed(model: str, key: str, period: str = "2026-03"):
    t.program(attribution_model=model)
    t.recompute()
    return t.value("attributed_revenue", period, scope="partner", key=key)


@pytest.fixture
def three_touches(source):
    """$100 influenced deal closed 2026-03-15 12:00; A touches on day -14 and day 0, B on day -7."""
    a, b = t.partner("a", source), t.partner("b", source)
    deal = t.deal("100.00", created="2026-02-01 00:00", closed="2026-03-15 12:00")
    t.touch(deal, a, "2026-03-01 12:00")
    t.touch(deal, b, "2026-03-08 12:00")
    t.touch(deal, a, "2026-03-15 12:00")
    return a, b


@pytest.mark.parametrize(
    "model, share_a, share_b",
    [
        ("first_touch", "100.00", None),
        ("last_touch", "100.00", None),
        # 2/3 and 1/3: 66.666... and 33.333...; the leftover cent goes to the larger remainder (A).
        ("linear", "66.67", "33.33"),
        # 40% first (A), 20% middle (B), 40% last (A).
        ("position_based", "80.00", "20.00"),
        # weights 2^-2, 2^-1, 2^0 (half-life 7 days): A 1.25/1.75 = 71.428...%, B 28.571...%.
        ("time_decay", "71.43", "28.57"),
    ],
)
def test_each_model_splits_a_deal_by_its_touch_weights(three_touches, model, share_a, share_b):
    assert attributed(model, "a") == D(share_a)
    assert t.value("attributed_revenue", "2026-03", scope="partner", key="b") == (
        D(share_b) if share_b else None
    )
    assert t.value("attributed_revenue", "2026-03") == D("100.00")


@pytest.mark.parametrize("model", ["first_touch", "last_touch", "linear", "time_decay", "position_based"])
def test_a_single_touch_gets_the_whole_deal_under_every_model(source, model):
    a = t.partner("a", source)
    deal = t.deal("123.45", created="2026-03-01 00:00", closed="2026-03-20 00:00")
    t.touch(deal, a, "2026-03-02 00:00")
    assert attributed(model, "a") == D("123.45")


@pytest.mark.parametrize("model", ["linear", "position_based", "time_decay"])
def test_equal_remainders_give_the_cent_to_the_partner_who_touched_first(source, model):
    # Three partners, one touch each at the same moment: 33.333... each; the odd cent goes to the
    # partner whose first touch came earlier (C touched first by row order).
    c, a, b = t.partner("c", source), t.partner("a", source), t.partner("b", source)
    deal = t.deal("100.00", created="2026-03-01 00:00", closed="2026-03-20 00:00")
    for p in (c, a, b):
        t.touch(deal, p, "2026-03-05 00:00")
    t.program(attribution_model=model)
    t.recompute()
    shares = {k: t.value("attributed_revenue", "2026-03", scope="partner", key=k) for k in "abc"}
    if model == "position_based":
        # 40% first (C), 20% middle (A), 40% last (B): no remainder at all.
        assert shares == {"c": D("40.00"), "a": D("20.00"), "b": D("40.00")}
    else:
        assert shares == {"c": D("33.34"), "a": D("33.33"), "b": D("33.33")}


def test_position_based_largest_remainders_with_four_touches(source):
    # $99.99 over A, B, C, D = 40/10/10/40 %: exact 39.996, 9.999, 9.999, 39.996. Floors leave 3 cents:
    # B and C (.9) first, then A before D (.6 tie, A touched first).
    partners = [t.partner(k, source) for k in "abcd"]
    deal = t.deal("99.99", created="2026-03-01 00:00", closed="2026-03-20 00:00")
    for day, p in zip((2, 3, 4, 5), partners, strict=True):
        t.touch(deal, p, f"2026-03-0{day} 00:00")
    t.program(attribution_model="position_based")
    t.recompute()
    shares = [t.value("attributed_revenue", "2026-03", scope="partner", key=k) for k in "abcd"]
    assert shares == [D("40.00"), D("10.00"), D("10.00"), D("39.99")]
    assert sum(shares) == D("99.99")


def test_touches_after_close_get_nothing(source):
    a, late = t.partner("a", source), t.partner("late", source)
    deal = t.deal("50.00", created="2026-03-01 00:00", closed="2026-03-10 00:00")
    t.touch(deal, a, "2026-03-09 23:59")
    t.touch(deal, late, "2026-03-10 00:01")
    assert attributed("linear", "a") == D("50.00")
    assert t.value("attributed_revenue", "2026-03", scope="partner", key="late") is None
    assert t.value("influenced_revenue", "2026-03", scope="partner", key="late") is None


def test_a_sourced_deal_gives_everything_to_its_sourcing_partner(source):
    sourcer, toucher = t.partner("s", source), t.partner("t", source)
    deal = t.deal("80.00", created="2026-03-01 00:00", closed="2026-03-10 00:00", sourced_by=sourcer)
    t.touch(deal, toucher, "2026-03-02 00:00")
    assert attributed("linear", "s") == D("80.00")
    assert t.value("attributed_revenue", "2026-03", scope="partner", key="t") is None
    # Sourced deals are never influenced revenue, even when touched.
    assert t.value("influenced_revenue", "2026-03") == D("0")


def test_a_join_source_gets_the_sum_of_its_partners_shares(source):
    other = t.join_source("event", kind="event")
    a, b, c = t.partner("a", source), t.partner("b", source), t.partner("c", other)
    deal = t.deal("90.00", created="2026-03-01 00:00", closed="2026-03-10 00:00")
    for p in (a, b, c):
        t.touch(deal, p, "2026-03-02 00:00")
    t.recompute()
    assert t.value("attributed_revenue", "2026-03", scope="join_source", key="web") == D("60.00")
    assert t.value("attributed_revenue", "2026-03", scope="join_source", key="event") == D("30.00")


def test_attribution_by_partner_computes_any_model_on_request(three_touches):
    t.program(attribution_model="linear")
    rows = attribution_by_partner(
        model="position_based", period_from=date(2026, 3, 1), period_to=date(2026, 3, 31)
    )
    by_key = {r["partner_key"]: r for r in rows}
    assert by_key["a"]["attributed"] == D("80.00") and by_key["b"]["attributed"] == D("20.00")
    assert by_key["a"]["influenced"] == D("100.00") and by_key["a"]["sourced"] == D("0.00")
    outside = attribution_by_partner(
        model="linear", period_from=date(2026, 4, 1), period_to=date(2026, 4, 30)
    )
    assert outside == []
