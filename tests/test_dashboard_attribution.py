"""The attribution explorer and the reconciliation page."""

import pytest
from django.urls import reverse

from tests.factories import StaffUserFactory
from tests.support import kpis as kt

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_client(client):
    client.force_login(StaffUserFactory())
    return client


@pytest.fixture
def influenced_by_two():
    """A $1,000 deal won in March, touched by Alpha, then Bravo, then Alpha again."""
    web = kt.join_source("web")
    alpha, bravo = kt.partner("alpha", web), kt.partner("bravo", web)
    won = kt.deal("1000.00", created="2026-03-01 09:00", closed="2026-03-20 09:00")
    kt.touch(won, alpha, "2026-03-02 09:00")
    kt.touch(won, bravo, "2026-03-05 09:00")
    kt.touch(won, alpha, "2026-03-10 09:00", kind="technical")
    kt.recompute(as_of="2026-03-31")
    return alpha, bravo


def test_explorer_shows_the_same_revenue_under_each_model_side_by_side(
    manager_client, influenced_by_two, django_assert_max_num_queries
):
    response = manager_client.get(reverse("dashboards:attribution"), {"grain": "month", "period": "2026-03"})
    assert response.context["models"] == [
        "first_touch",
        "last_touch",
        "linear",
        "time_decay",
        "position_based",
    ]
    rows = {r.partner_key: r for r in response.context["rows"]}
    alpha, bravo = rows["alpha"].models, rows["bravo"].models
    assert (str(alpha["first_touch"]), str(bravo["first_touch"])) == ("1000.00", "0.00")
    assert (str(alpha["last_touch"]), str(bravo["last_touch"])) == ("1000.00", "0.00")
    assert (str(alpha["linear"]), str(bravo["linear"])) == ("666.67", "333.33")
    assert (str(alpha["position_based"]), str(bravo["position_based"])) == ("800.00", "200.00")
    # Every model splits the whole deal.
    assert [str(t) for t in response.context["totals"]] == ["1000.00"] * 5
    html = response.content.decode()
    assert "$666.67" in html and "$333.33" in html


def test_reconciliation_links_each_suspicious_fact_to_its_rows(manager_client):
    web = kt.join_source("web")
    late = kt.partner("late", web, joined="2026-03-15", applied="2026-03-01")
    early_deal = kt.deal("500.00", created="2026-03-02 09:00", closed="2026-03-05 09:00", sourced_by=late)
    kt.recompute(as_of="2026-03-31")
    response = manager_client.get(reverse("dashboards:reconciliation"))
    facts = [f for f in response.context["facts"] if f["kind"] == "sourced_before_joined"]
    assert len(facts) == 1
    urls = {link["url"] for link in facts[0]["links"]}
    assert reverse("dashboards:partner_detail", args=[late.pk]) in urls
    assert reverse("admin:deals_deal_change", args=[early_deal.pk]) in urls
    assert reverse("dashboards:partner_detail", args=[late.pk]) in response.content.decode()


def test_explorer_query_count_does_not_grow_with_partners_and_deals(manager_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    web = kt.join_source("web")

    def add_partners(keys):
        for key in keys:
            p = kt.partner(key, web)
            d = kt.deal("100.00", created="2026-03-01 09:00", closed="2026-03-20 09:00")
            kt.touch(d, p, "2026-03-02 09:00")

    url = reverse("dashboards:attribution")
    add_partners(["p1", "p2"])
    with CaptureQueriesContext(connection) as small:
        manager_client.get(url, {"period": "2026-03"})
    add_partners(["p3", "p4", "p5", "p6", "p7", "p8"])
    with CaptureQueriesContext(connection) as large:
        response = manager_client.get(url, {"period": "2026-03"})
    assert len(response.context["rows"]) == 8
    assert len(large) == len(small)


def test_reconciliation_stays_within_its_query_budget(manager_client, django_assert_max_num_queries):
    web = kt.join_source("web")
    late = kt.partner("late", web, joined="2026-03-15", applied="2026-03-01")
    for _ in range(5):
        kt.deal("500.00", created="2026-03-02 09:00", closed="2026-03-05 09:00", sourced_by=late)
    kt.recompute(as_of="2026-03-31")
    # 6, plus the names of the rows a page involves: partners, deals, accounts, registrations.
    with django_assert_max_num_queries(10):
        response = manager_client.get(reverse("dashboards:reconciliation"))
    assert len(response.context["facts"]) == 5


def test_reconciliation_is_paginated_and_filters_by_kind(manager_client):
    web = kt.join_source("web")
    late = kt.partner("late", web, joined="2026-03-15", applied="2026-03-01")
    for _ in range(53):
        kt.deal("500.00", created="2026-03-02 09:00", closed="2026-03-05 09:00", sourced_by=late)
    on_time = kt.partner("on-time", web, joined="2026-02-01", applied="2026-01-20")
    closed = kt.deal("100.00", created="2026-03-01 09:00", closed="2026-03-03 09:00")
    kt.touch(closed, on_time, "2026-03-10 09:00")
    kt.recompute(as_of="2026-03-31")
    url = reverse("dashboards:reconciliation")

    first = manager_client.get(url)
    assert len(first.context["facts"]) == 50 and first.context["total"] == 54
    assert "Page 1 of 2" in first.content.decode()
    second = manager_client.get(url, {"page": 2})
    assert len(second.context["facts"]) == 4
    late_touches = manager_client.get(url, {"kind": "touch_after_close"})
    assert [f["kind"] for f in late_touches.context["facts"]] == ["touch_after_close"]
    assert "Touch after the deal closed (1)" in late_touches.content.decode()
