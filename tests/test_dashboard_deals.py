"""Staff deal list (filters, sort, pages) and the deal page (timeline, five attribution splits)."""

from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse

from dashboards import deal_views
from deals.selectors import DealListQuery, deal_list, deal_list_count
from kpis.deal_attribution import MODELS, deal_attribution_splits
from tests.factories import PartnerUserFactory, StaffUserFactory
from tests.support import kpis as kt

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_client(client):
    client.force_login(StaffUserFactory())
    return client


@pytest.fixture
def world():
    """Two join sources; five deals of every segment and status, by hand:

    d1 $1,000 won 2026-03-20, influenced: Alpha, Bravo, Alpha touch it (and Charlie after the close)
    d2 $5,000 won 2026-02-10, sourced by Charlie (join source "event")
    d3 $300   lost 2026-03-05, direct
    d4 $2,500 open, influenced by Bravo
    d5 $800   open, sourced by Alpha
    """
    web, event = kt.join_source("web"), kt.join_source("event")
    alpha, bravo, charlie = kt.partner("alpha", web), kt.partner("bravo", web), kt.partner("charlie", event)
    d1 = kt.deal("1000.00", created="2026-03-01 09:00", closed="2026-03-20 09:00", key="d1")
    kt.touch(d1, alpha, "2026-03-02 09:00")
    kt.touch(d1, bravo, "2026-03-05 09:00")
    kt.touch(d1, alpha, "2026-03-10 09:00", kind="technical")
    kt.touch(d1, charlie, "2026-03-25 09:00")  # after the close: does not count
    d2 = kt.deal(
        "5000.00", created="2026-01-05 09:00", closed="2026-02-10 09:00", sourced_by=charlie, key="d2"
    )
    d3 = kt.deal("300.00", created="2026-02-01 09:00", closed="2026-03-05 09:00", status="lost", key="d3")
    d4 = kt.deal("2500.00", created="2026-03-03 09:00", key="d4")
    kt.touch(d4, bravo, "2026-03-04 09:00")
    d5 = kt.deal("800.00", created="2026-03-06 09:00", sourced_by=alpha, key="d5")
    return {
        "web": web,
        "event": event,
        "alpha": alpha,
        "bravo": bravo,
        "charlie": charlie,
        "d1": d1,
        "d2": d2,
        "d3": d3,
        "d4": d4,
        "d5": d5,
    }


def keys(query: DealListQuery) -> list[str]:
    return [d.key for d in deal_list(query)]


def test_each_filter_narrows_the_list_to_the_deals_by_hand(world):
    assert keys(DealListQuery(sort="amount")) == ["d2", "d4", "d1", "d5", "d3"]
    assert keys(DealListQuery(status="won", sort="amount")) == ["d2", "d1"]
    assert keys(DealListQuery(segment="influenced", sort="amount")) == ["d4", "d1"]
    assert keys(DealListQuery(segment="direct")) == ["d3"]
    assert keys(DealListQuery(segment="sourced", sort="amount", descending=False)) == ["d5", "d2"]
    # Sourced or touched by the partner; Charlie's late touch still involves it in d1.
    assert keys(DealListQuery(partner_id=world["alpha"].pk, sort="amount")) == ["d1", "d5"]
    assert keys(DealListQuery(partner_id=world["charlie"].pk, sort="amount")) == ["d2", "d1"]
    assert keys(DealListQuery(join_source_id=world["web"].pk, sort="amount")) == ["d4", "d1", "d5"]
    # Closed in March (local dates, both ends included), and created in March.
    march = {"date_from": date(2026, 3, 1), "date_to": date(2026, 3, 31)}
    assert keys(DealListQuery(**march, sort="amount")) == ["d1", "d3"]
    assert keys(DealListQuery(**march, date_basis="created", sort="amount")) == ["d4", "d1", "d5"]
    assert keys(DealListQuery(amount_min=Decimal("800"), amount_max=Decimal("2500"), sort="amount")) == [
        "d4",
        "d1",
        "d5",
    ]


def test_list_page_filters_sorts_and_pages_with_a_constant_number_of_queries(
    manager_client, world, django_assert_max_num_queries
):
    url = reverse("dashboards:deals")
    response = manager_client.get(url, {"segment": "influenced", "sort": "amount", "direction": "asc"})
    assert response.status_code == 200
    assert [d.key for d in response.context["page"]] == ["d1", "d4"]
    assert "Influenced" in response.content.decode()
    response = manager_client.get(url, {"period": "2026-03", "status": "won"})
    assert [d.key for d in response.context["page"]] == ["d1"]
    response = manager_client.get(url, {"partner": "alpha", "sort": "amount"})
    assert [d.key for d in response.context["page"]] == ["d1", "d5"]
    response = manager_client.get(url, {"partner": str(world["charlie"].pk), "sort": "amount"})
    assert [d.key for d in response.context["page"]] == ["d2", "d1"]
    for _ in range(30):
        kt.deal("10.00", created="2026-04-01 09:00")
    with django_assert_max_num_queries(12):
        response = manager_client.get(url, {"page": "2"})
    assert len(response.context["page"]) == 10  # 35 deals, 25 a page


def test_column_links_flip_the_sorted_column_and_keep_the_filters(manager_client, world):
    response = manager_client.get(
        reverse("dashboards:deals"),
        {"segment": "influenced", "sort": "amount", "direction": "asc", "page": "1"},
    )
    links = response.context["sort_links"]
    assert links["amount"] == {
        "url": "?segment=influenced&sort=amount&direction=desc",
        "aria_sort": "ascending",
    }
    assert links["closed"] == {"url": "?segment=influenced&sort=closed&direction=desc", "aria_sort": "none"}
    link = 'href="?segment=influenced&amp;sort=amount&amp;direction=desc"'
    assert f'aria-sort="ascending"><a class="sort-link" {link}' in response.content.decode()


def test_the_count_stops_at_its_cap_and_says_so(manager_client, world, monkeypatch):
    monkeypatch.setattr(deal_views, "COUNT_CAP", 3)
    url = reverse("dashboards:deals")
    response = manager_client.get(url, {"sort": "amount"})  # 5 deals: over the cap
    page = response.context["page"]
    assert (page.paginator.count, page.paginator.capped, page.paginator.num_pages) == (3, True, 1)
    assert [d.key for d in page] == ["d2", "d4", "d1"]
    assert "More than 3 deals" in response.content.decode()
    response = manager_client.get(url, {"status": "won"})  # 2 deals: counted
    page = response.context["page"]
    assert (page.paginator.count, page.paginator.capped) == (2, False)
    assert "2 deals." in response.content.decode()


def test_bad_filters_are_form_errors_not_500(manager_client, world):
    response = manager_client.get(
        reverse("dashboards:deals"),
        {
            "amount_min": "abc",
            "period": "2026-13",
            "date_from": "1200-01-01",
            "status": "bogus",
            "partner": "nobody",
        },
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"amount_min", "period", "date_from", "status", "partner"}


def test_deal_page_splits_the_amount_under_all_five_models(
    manager_client, world, django_assert_max_num_queries
):
    url = reverse("dashboards:deal_detail", args=[world["d1"].pk])
    with django_assert_max_num_queries(60):
        response = manager_client.get(url)
    assert response.status_code == 200
    splits = {
        s.model: {share.partner_name: share.amount for share in s.shares} for s in response.context["splits"]
    }
    assert list(splits) == list(MODELS)
    assert splits["first_touch"] == {"Alpha": Decimal("1000.00"), "Bravo": Decimal("0.00")}
    assert splits["last_touch"] == {"Alpha": Decimal("1000.00"), "Bravo": Decimal("0.00")}
    assert splits["linear"] == {"Alpha": Decimal("666.67"), "Bravo": Decimal("333.33")}
    assert splits["position_based"] == {"Alpha": Decimal("800.00"), "Bravo": Decimal("200.00")}
    for split in response.context["splits"]:
        assert split.total == Decimal("1000.00")  # every model splits exactly the whole deal
    kinds = [e.kind for e in response.context["timeline"]]
    assert kinds == ["created", "touch", "touch", "touch", "closed", "touch"]
    assert [e.counts for e in response.context["timeline"]][-1] is False  # Charlie's late touch


def test_sourced_deal_gives_everything_to_its_partner_and_open_deals_nothing(world):
    for split in deal_attribution_splits(world["d2"]):
        assert [(s.partner_name, s.amount, s.segment) for s in split.shares] == [
            ("Charlie", Decimal("5000.00"), "sourced")
        ]
    assert all(not s.shares for s in deal_attribution_splits(world["d4"]))


def test_the_same_number_of_queries_whatever_the_number_of_touches(
    manager_client, world, django_assert_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("dashboards:deal_detail", args=[world["d1"].pk])
    with CaptureQueriesContext(connection) as few:
        manager_client.get(url)
    for day in range(11, 19):
        kt.touch(world["d1"], world["bravo"], f"2026-03-{day} 09:00")
    with CaptureQueriesContext(connection) as many:
        manager_client.get(url)
    assert len(many.captured_queries) == len(few.captured_queries)


@pytest.mark.parametrize("name", ["deals", "deal_detail"])
def test_partners_are_refused(client, world, name):
    client.force_login(PartnerUserFactory(partner=world["alpha"]).user)
    args = [world["d1"].pk] if name == "deal_detail" else []
    assert client.get(reverse(f"dashboards:{name}", args=args)).status_code == 403


def test_unknown_deal_is_404(manager_client, world):
    assert manager_client.get(reverse("dashboards:deal_detail", args=[999999])).status_code == 404


def test_deal_api_filters_by_segment_and_join_source(world):
    from tests.support.api import client_for

    staff = client_for(StaffUserFactory())

    def api_keys(client, **params):
        response = client.get("/api/v1/deals/", params)
        assert response.status_code == 200, response.content
        return sorted(d["key"] for d in response.json()["results"])

    assert api_keys(staff, segment="influenced") == ["d1", "d4"]
    assert api_keys(staff, segment="direct") == ["d3"]
    assert api_keys(staff, join_source=world["web"].pk) == ["d1", "d4", "d5"]
    assert api_keys(staff, join_source=world["event"].pk) == ["d1", "d2"]
    assert staff.get("/api/v1/deals/", {"segment": "nope"}).status_code == 400
    # A partner user: its own involvement only, and nothing for another join source.
    alpha = client_for(PartnerUserFactory(partner=world["alpha"]).user)
    assert api_keys(alpha, join_source=world["web"].pk) == ["d1", "d5"]
    assert api_keys(alpha, join_source=world["event"].pk) == []
    assert api_keys(alpha, segment="sourced") == ["d5"]


def test_join_source_filter_lists_each_involved_deal_once_and_counts_it():
    """Sourced by a partner of the join source, or touched by one (any touch, late ones too):
    e1 sourced by P1; e2 touched by P2 only; e3 touched by Q only (another join source: out);
    e4 sourced by P1 and touched by P1 and P2 (listed once); e5 sourced by Q, touched by P2;
    e6 neither. So e1, e2, e4, e5: 4 deals, 2 of them sourced by the join source."""
    partners, other = kt.join_source("partners"), kt.join_source("other")
    p1, p2, q = kt.partner("p1", partners), kt.partner("p2", partners), kt.partner("q", other)
    kt.deal("100.00", created="2026-03-01 09:00", sourced_by=p1, key="e1")
    e2 = kt.deal("200.00", created="2026-03-02 09:00", key="e2")
    kt.touch(e2, p2, "2026-03-03 09:00")
    e3 = kt.deal("300.00", created="2026-03-03 09:00", key="e3")
    kt.touch(e3, q, "2026-03-04 09:00")
    e4 = kt.deal("400.00", created="2026-03-04 09:00", closed="2026-03-10 09:00", sourced_by=p1, key="e4")
    kt.touch(e4, p1, "2026-03-05 09:00")
    kt.touch(e4, p2, "2026-03-20 09:00")  # after the close: still involves the join source
    e5 = kt.deal("500.00", created="2026-03-05 09:00", sourced_by=q, key="e5")
    kt.touch(e5, p2, "2026-03-06 09:00")
    kt.deal("600.00", created="2026-03-06 09:00", key="e6")
    query = DealListQuery(join_source_id=partners.pk, sort="amount")
    assert keys(query) == ["e5", "e4", "e2", "e1"]
    assert keys(DealListQuery(join_source_id=partners.pk, sort="created", descending=False)) == [
        "e1",
        "e2",
        "e4",
        "e5",
    ]
    assert keys(DealListQuery(join_source_id=partners.pk, status="won", sort="name")) == ["e4"]
    assert keys(DealListQuery(join_source_id=other.pk, sort="amount")) == ["e5", "e3"]
    # Counted up to the cap + 1: exactly when under it; the sourced deals alone (2) reach a cap
    # of 1; a cap of 2 falls through to the whole filter, stopped at 3.
    assert deal_list_count(query, 10) == 4
    assert deal_list_count(query, 1) == 2
    assert deal_list_count(query, 2) == 3
    assert deal_list_count(DealListQuery(join_source_id=partners.pk, status="won"), 10) == 1
