"""A partner's deals (`deals.selectors.partner_deals`): sourced, touched or registered by it, each
once, and the pages that list or count them (the staff partner page, the portal home and deal list)
in a constant number of queries."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from deals.selectors import PartnerDealList, partner_deal_totals, partner_deals
from tests.factories import (
    T0,
    DealFactory,
    DealRegistrationFactory,
    PartnerFactory,
    PartnerUserFactory,
    StaffUserFactory,
    TouchFactory,
)

pytestmark = pytest.mark.django_db


def registered(deal, partner):
    return DealRegistrationFactory(
        partner=partner,
        account=deal.account,
        deal=deal,
        status="approved",
        decided_at=T0 + timedelta(hours=1),
    )


@pytest.fixture
def world():
    """Alpha's deals, one a day from T0 (created_at), by the path that reaches them:

    d1 open  $1,000  sourced by Alpha
    d2 won   $200    touched by Alpha twice
    d3 open  $300    registered by Alpha (approved, linked)
    d4 won   $400    sourced, touched and registered by Alpha (counted once)
    d5 open  $50     sourced by Bravo, touched by Alpha
    and Bravo's alone: d6 sourced, d7 touched, d8 registered; a direct deal d9; a registration of
    Alpha's without a deal.
    """
    alpha, bravo = PartnerFactory(name="Alpha"), PartnerFactory(name="Bravo")

    def deal(n, amount, **kw):
        return DealFactory(name=f"d{n}", amount=Decimal(amount), created_at=T0 + timedelta(days=n), **kw)

    won = {"status": "won", "closed_at": T0 + timedelta(days=30)}
    deal(1, "1000.00", sourcing_partner=alpha)
    d2 = deal(2, "200.00", **won)
    TouchFactory(deal=d2, partner=alpha)
    TouchFactory(deal=d2, partner=alpha, touched_at=T0 + timedelta(days=3))
    d3 = deal(3, "300.00")
    registered(d3, alpha)
    d4 = deal(4, "400.00", sourcing_partner=alpha, **won)
    TouchFactory(deal=d4, partner=alpha)
    registered(d4, alpha)
    d5 = deal(5, "50.00", sourcing_partner=bravo)
    TouchFactory(deal=d5, partner=alpha)
    TouchFactory(deal=d5, partner=bravo)
    deal(6, "1.00", sourcing_partner=bravo)
    TouchFactory(deal=deal(7, "1.00"), partner=bravo)
    registered(deal(8, "1.00"), bravo)
    deal(9, "1.00")
    DealRegistrationFactory(partner=alpha)
    return {"alpha": alpha, "bravo": bravo, "alpha_deals": ["d5", "d4", "d3", "d2", "d1"]}


def grow(world, n: int = 4) -> None:
    """More deals for Alpha by every path, and more of Bravo's."""
    alpha, bravo = world["alpha"], world["bravo"]
    for _ in range(n):
        DealFactory(sourcing_partner=alpha)
        TouchFactory(deal=DealFactory(sourcing_partner=bravo), partner=alpha)
        registered(DealFactory(), alpha)
        DealFactory(sourcing_partner=bravo)
        TouchFactory(partner=bravo)


def test_a_partners_deals_by_each_path_once(world):
    deals = partner_deals(world["alpha"])
    assert sorted(d.name for d in deals) == ["d1", "d2", "d3", "d4", "d5"]
    assert deals.count() == 5  # d2 (two touches) and d4 (three paths) once each
    assert partner_deals(world["alpha"].pk).filter(status="won").count() == 2
    assert sorted(d.name for d in partner_deals(world["bravo"])) == ["d5", "d6", "d7", "d8"]
    assert not partner_deals(PartnerFactory()).exists()


def test_a_partners_deal_list_pages_newest_first(world):
    listed = PartnerDealList(world["alpha"])
    assert listed.count() == 5
    assert [d.name for d in listed[1:3]] == ["d4", "d3"]
    assert [d.name for d in listed[4:50]] == ["d1"] and listed[5:10] == []
    assert listed[0].name == "d5"
    won = PartnerDealList(world["alpha"].pk, status="won")
    assert won.count() == 2 and [d.name for d in won[0:50]] == ["d4", "d2"]


def test_a_partners_deal_totals_by_hand(world):
    # Won: d2, d4. Open, sourced by Alpha: d1 ($1,000); open, not sourced by Alpha: d3 (registered,
    # $300) and d5 (Bravo's, touched by Alpha, $50).
    assert partner_deal_totals(world["alpha"]) == {
        "won_n": 2,
        "sourced_n": 1,
        "sourced_amount": Decimal("1000.00"),
        "touched_n": 2,
        "touched_amount": Decimal("350.00"),
    }
    assert partner_deal_totals(PartnerFactory()) == {
        "won_n": 0,
        "sourced_n": 0,
        "sourced_amount": None,
        "touched_n": 0,
        "touched_amount": None,
    }


def queries(client, url) -> tuple[int, object]:
    client.get(url)  # warm: the first request of a session caches what later ones reuse
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries), response


def test_staff_partner_page_lists_the_partners_deals_newest_first_in_constant_queries(client, world):
    client.force_login(StaffUserFactory())
    url = reverse("dashboards:partner_detail", args=[world["alpha"].pk])
    few, response = queries(client, url)
    assert [d.name for d in response.context["deals"]] == world["alpha_deals"]
    grow(world)
    many, response = queries(client, url)
    assert len(response.context["deals"]) == 5 + 12
    assert many == few


def test_portal_home_and_deal_list_count_the_partners_deals_in_constant_queries(client, world):
    client.force_login(PartnerUserFactory(partner=world["alpha"]).user)
    home, deals = reverse("portal:home"), reverse("portal:deals")
    few_home, response = queries(client, home)
    html = response.content.decode()
    assert '<dd data-fact="deals_won">2</dd>' in html
    assert '<dd data-fact="pipeline_sourced">1 · $1,000.00</dd>' in html
    assert '<dd data-fact="pipeline_touched">2 · $350.00</dd>' in html
    few_deals, response = queries(client, deals)
    assert [d.name for d in response.context["deals"]] == world["alpha_deals"]
    assert response.context["page"].paginator.count == 5
    won = client.get(deals, {"status": "won"}).context["deals"]
    assert [d.name for d in won] == ["d4", "d2"]
    grow(world)
    many_home, response = queries(client, home)
    assert '<dd data-fact="pipeline_sourced">5 · $5,000.00</dd>' in response.content.decode()
    many_deals, response = queries(client, deals)
    assert response.context["page"].paginator.count == 5 + 12
    assert (many_home, many_deals) == (few_home, few_deals)
