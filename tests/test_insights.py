"""The KPI heat map's peer percentiles and the pipeline forecast with its backtest, by hand."""

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from kpis.forecast import pipeline_forecast
from kpis.forecast_store import forecast_snapshot_compute
from kpis.peers import Cell, PeerGroup, heat_map, peer_standing
from kpis.periods import parse_period
from partners.models import Partner
from tests.factories import PartnerUserFactory, StaffUserFactory
from tests.support import kpis as kt
from tests.support.dashboards import publish

pytestmark = pytest.mark.django_db
Q1 = parse_period("2026-Q1")


def tiered(key, source, tier):
    partner = kt.partner(key, source)
    partner.tier = tier
    partner.save()
    return partner


@pytest.fixture
def peers():
    """Gold: A, B, C, D; silver: E. Published 2026-Q1 values (D has no sourced row: 0; C no win rate):

                 A       B       C       D       E (silver)
    sourced      100     300     300     —       50
    win rate     0.5     0.25    —       0.75    —
    cac          10      20      —       —       —
    """
    web = kt.join_source("web")
    a, b, c, d = (tiered(k, web, "gold") for k in "abcd")
    e = tiered("e", web, "silver")
    publish(
        [
            (a, "2026-Q1", "sourced_revenue", "100"),
            (b, "2026-Q1", "sourced_revenue", "300"),
            (c, "2026-Q1", "sourced_revenue", "300"),
            (e, "2026-Q1", "sourced_revenue", "50"),
            (a, "2026-Q1", "win_rate_sourced", "0.5"),
            (b, "2026-Q1", "win_rate_sourced", "0.25"),
            (d, "2026-Q1", "win_rate_sourced", "0.75"),
            (a, "2026-Q1", "cac", "10"),
            (b, "2026-Q1", "cac", "20"),
        ]
    )
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "web": web}


def cells(rows):
    return {r.name: {c.metric: (c.percentile, c.top, c.peers) for c in r.cells} for r in rows}


def test_percentiles_within_the_tier_by_hand(peers):
    total, rows = heat_map(
        period=Q1, metrics=["sourced_revenue", "win_rate_sourced", "cac"], group=PeerGroup.TIER
    )
    assert total == 5
    got = cells(rows)
    # Sourced among 4 gold (D reads 0): ranks D 1, A 2, B = C 3 -> PERCENT_RANK 0, 1/3, 2/3, 2/3;
    # CUME_DIST from the best: B, C 2/4, A 3/4, D 4/4.
    assert [got[n]["sourced_revenue"] for n in "ABCD"] == [
        (Decimal(33), 75, 4),
        (Decimal(67), 50, 4),
        (Decimal(67), 50, 4),
        (Decimal(0), 100, 4),
    ]
    # Win rate among the 3 gold partners with one (C is undefined, left out).
    assert [got[n]["win_rate_sourced"] for n in "ABD"] == [
        (Decimal(50), 67, 3),
        (Decimal(0), 100, 3),
        (Decimal(100), 34, 3),
    ]
    assert got["C"]["win_rate_sourced"] == (None, None, 0)
    # CAC: lower is better.
    assert got["A"]["cac"] == (Decimal(100), 50, 2) and got["B"]["cac"] == (Decimal(0), 100, 2)
    # E is alone in silver: a value, no percentile.
    assert got["E"]["sourced_revenue"] == (None, None, 1)
    # Sorted in the database: by sourced revenue, best first, ties by name.
    assert [r.name for r in rows] == ["B", "C", "A", "E", "D"]


def test_other_peer_groups_and_one_group_only(peers):
    # By join source every partner is in "web": sourced among 5 (E 50 second lowest).
    _, rows = heat_map(period=Q1, metrics=["sourced_revenue"], group=PeerGroup.JOIN_SOURCE)
    assert cells(rows)["E"]["sourced_revenue"] == (Decimal(25), 80, 5)
    total, rows = heat_map(
        period=Q1,
        metrics=["sourced_revenue"],
        group=PeerGroup.TIER,
        group_value="gold",
        sort="name",
        descending=False,
    )
    assert total == 4 and [r.name for r in rows] == ["A", "B", "C", "D"]


def test_partner_page_says_where_the_partner_stands(client, peers):
    standing = {(s.group, s.cell.metric): s for s in peer_standing(peers["d"], Q1)}
    assert standing[(PeerGroup.TIER, "win_rate_sourced")].sentence == (
        "Top 34% of 3 gold partners on win rate, sourced"
    )
    # D has no sourced revenue (0): the worst of the four gold partners, so said from the bottom.
    assert standing[(PeerGroup.TIER, "sourced_revenue")].sentence == (
        "Bottom 25% of 4 gold partners on partner-sourced revenue"
    )
    client.force_login(StaffUserFactory())
    response = client.get(
        reverse("dashboards:partner_detail", args=[peers["d"].pk]), {"grain": "quarter", "period": "2026-Q1"}
    )
    assert "Top 34% of 3 gold partners on win rate, sourced" in response.content.decode()


def test_standing_is_the_heat_map_cell_for_every_partner_and_group(peers):
    """The partner page counts where one partner stands; the heat map ranks everyone: same figures.

    Added to the fixture: G (gold, a referral partner from "event", sourced 300: tied with B and C;
    a stored but undefined win rate), H (gold, joined after the quarter: in no Q1 group).
    """
    event = kt.join_source("event")
    g = tiered("g", event, "gold")
    g.type = "referral"
    g.save()
    h = tiered("h", peers["web"], "gold")
    h.joined_at = date(2026, 4, 2)
    h.save()
    publish(
        [
            (g, "2026-Q1", "sourced_revenue", "300"),
            (g, "2026-Q1", "win_rate_sourced", None),
            (h, "2026-Q1", "sourced_revenue", "900"),
            (h, "2026-Q1", "win_rate_sourced", "0.9"),
        ]
    )
    metrics = ("sourced_revenue", "win_rate_sourced", "cac", "leads_generated")
    compared = 0
    for group in PeerGroup:
        _, rows = heat_map(period=Q1, metrics=list(metrics), group=group, limit=100)
        assert len(rows) == 6  # A-E and G, not H
        for row in rows:
            partner = Partner.objects.get(pk=row.partner_id)
            cells = {s.cell.metric: s.cell for s in peer_standing(partner, Q1, metrics) if s.group == group}
            assert cells == {c.metric: c for c in row.cells}, (group, row.name)
            compared += 1
    assert compared == 18
    # By hand: sourced among the 5 gold partners of Q1 (D 0, A 100, B = C = G 300): G ranks 3rd of
    # 5 from the bottom (PERCENT_RANK 2/4), top 3/5, bottom 5/5; its win rate is undefined; it is
    # the only referral partner and the only one from "event".
    standing = {(s.group, s.cell.metric): s.cell for s in peer_standing(g, Q1, metrics)}
    assert standing[(PeerGroup.TIER, "sourced_revenue")] == Cell(
        "sourced_revenue", Decimal(300), Decimal(50), 60, 100, 5
    )
    assert standing[(PeerGroup.TIER, "win_rate_sourced")] == Cell(
        "win_rate_sourced", None, None, None, None, 0
    )
    assert standing[(PeerGroup.TYPE, "sourced_revenue")].peers == 1
    assert standing[(PeerGroup.JOIN_SOURCE, "leads_generated")] == Cell(
        "leads_generated", Decimal(0), None, None, None, 1
    )
    # H had not joined by the end of the quarter: no standing at all.
    assert {s.cell.value for s in peer_standing(h, Q1, metrics)} == {None}


def test_heat_map_page_sorts_pages_and_keeps_its_query_count(client, peers):
    client.force_login(StaffUserFactory())
    url = reverse("dashboards:heatmap")
    params = {
        "grain": "quarter",
        "period": "2026-Q1",
        "metrics": ["win_rate_sourced", "cac"],
        "sort": "cac",
        "direction": "asc",
    }
    with CaptureQueriesContext(connection) as few:
        response = client.get(url, params)
    assert response.status_code == 200
    assert [r.name for r in response.context["rows"]][:2] == ["A", "B"]
    for n in range(20):
        tiered(f"x{n}", peers["web"], "gold")
    with CaptureQueriesContext(connection) as many:
        client.get(url, params)
    assert len(many.captured_queries) == len(few.captured_queries)
    assert client.get(url, {"period": "2026-Q9"}).status_code == 400


@pytest.fixture
def pipeline():
    """One partner program, UTC, as of 2026-07-15 (forecast: 2026-Q4; history: 2025-Q3 .. 2026-Q2).

    h1 $1000 sourced by Alpha, created 2026-03-20, won 2026-05-10
    h2 $400  sourced by Alpha, created 2026-03-25, lost 2026-05-01
    h3 $2000 influenced (Alpha touch 03-01), created 2026-01-10, won 2026-06-01
    h4 $600  influenced (Alpha 03-02, Bravo 03-03), created 2026-01-15, still open
    h5 $700  sourced by Alpha, created 2025-12-20, lost 2026-04-20
    h6 $500  sourced by Alpha, created 2025-12-10, won 2026-02-15
    n1 $4000 sourced by Alpha, created 2026-07-01, open
    n2 $3000 sourced by Alpha, created 2026-07-10, open
    """
    kt.program(time_zone="UTC")
    web, event = kt.join_source("web"), kt.join_source("event")
    alpha, bravo = (
        kt.partner("alpha", web, joined="2025-01-01"),
        kt.partner("bravo", event, joined="2025-01-01"),
    )
    kt.deal("1000.00", created="2026-03-20 09:00", closed="2026-05-10 09:00", sourced_by=alpha)
    kt.deal("400.00", created="2026-03-25 09:00", closed="2026-05-01 09:00", status="lost", sourced_by=alpha)
    h3 = kt.deal("2000.00", created="2026-01-10 09:00", closed="2026-06-01 09:00")
    kt.touch(h3, alpha, "2026-03-01 09:00")
    h4 = kt.deal("600.00", created="2026-01-15 09:00")
    kt.touch(h4, alpha, "2026-03-02 09:00")
    kt.touch(h4, bravo, "2026-03-03 09:00")
    kt.deal("700.00", created="2025-12-20 09:00", closed="2026-04-20 09:00", status="lost", sourced_by=alpha)
    kt.deal("500.00", created="2025-12-10 09:00", closed="2026-02-15 09:00", sourced_by=alpha)
    kt.deal("4000.00", created="2026-07-01 09:00", sourced_by=alpha)
    kt.deal("3000.00", created="2026-07-10 09:00", sourced_by=alpha)
    return {"alpha": alpha, "bravo": bravo, "web": web, "event": event}


def forecast():
    return pipeline_forecast(as_of=date(2026, 7, 15), now=kt.at("2026-07-15 12:00"))


def test_forecast_by_hand(pipeline):
    result = forecast()
    assert result.quarter == "2026-Q4"
    # Open at 2026-01-01: h5, h6 (sourced, 0-30 days; h6 won in Q1). Open at 2026-04-01: h1, h2
    # (sourced, 0-30), h5 (sourced, 91-180), h3, h4 (influenced, 31-90; h3 won).
    assert [(r.segment, r.bucket, r.won, r.open) for r in result.rates] == [
        ("sourced", 0, 2, 4),
        ("sourced", 2, 0, 1),
        ("influenced", 1, 1, 2),
    ]
    # Open now, aged on 2026-10-01: n1 sourced 92 days (rate 0/1), n2 sourced 83 days (31-90: no
    # history, the sourced pool 2/5) -> 3000 x 2/5; h4 influenced 259 days (pool 1/2) -> 600 / 2.
    assert (result.program.sourced, result.program.influenced) == (Decimal("1200.00"), Decimal("300.00"))
    by_partner = {r.name: (r.sourced, r.influenced) for r in result.partners}
    assert by_partner == {
        "Alpha": (Decimal("1200.00"), Decimal("300.00")),
        "Bravo": (Decimal("0.00"), Decimal("300.00")),
    }
    by_source = {r.name: (r.sourced, r.influenced) for r in result.join_sources}
    assert by_source == {
        "Web": (Decimal("1200.00"), Decimal("300.00")),
        "Event": (Decimal("0.00"), Decimal("300.00")),
    }


def test_backtest_by_hand(pipeline):
    result = forecast()
    rows = [(b.quarter, b.forecast_sourced, b.actual_sourced, b.error_sourced) for b in result.backtest]
    assert rows == [
        ("2025-Q3", Decimal("0.00"), Decimal("0.00"), None),
        ("2025-Q4", Decimal("0.00"), Decimal("0.00"), None),
        # No history before 2026: nothing predicted; h6 brought 500.
        ("2026-Q1", Decimal("0.00"), Decimal("500.00"), Decimal("-100.0")),
        # Rates from the 2026-01-01 snapshot: sourced 0-30 days 1/2, the pool 1/2 for h5:
        # (1000 + 400) / 2 + 700 / 2 = 1050 against h1's 1000: +5.0%.
        ("2026-Q2", Decimal("1050.00"), Decimal("1000.00"), Decimal("5.0")),
    ]
    q2 = result.backtest[-1]
    assert (q2.forecast_influenced, q2.actual_influenced, q2.error_influenced) == (
        Decimal("0.00"),
        Decimal("2000.00"),
        Decimal("-100.0"),
    )
    alpha = next(r for r in result.partners if r.name == "Alpha")
    assert (alpha.backtest_sourced, alpha.actual_sourced, alpha.error_sourced) == (
        Decimal("1050.00"),
        Decimal("1500.00"),
        Decimal("-30.0"),
    )
    bravo = next(r for r in result.partners if r.name == "Bravo")
    assert bravo.error_influenced is None


def test_forecast_page_is_for_staff_with_a_constant_query_count(client, pipeline):
    client.force_login(StaffUserFactory())
    url = reverse("dashboards:forecast")
    forecast_snapshot_compute()
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    for n in range(10):
        kt.deal("100.00", created="2026-06-01 09:00", sourced_by=kt.partner(f"p{n}", pipeline["web"]))
    forecast_snapshot_compute()  # ten more partners in the stored forecast
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    assert len(many.captured_queries) == len(few.captured_queries)


@pytest.mark.parametrize("name", ["heatmap", "forecast"])
def test_partners_are_refused(client, peers, name):
    client.force_login(PartnerUserFactory(partner=peers["a"]).user)
    assert client.get(reverse(f"dashboards:{name}")).status_code == 403


def api_client(user):
    from tests.support.api import client_for

    return client_for(user)


def test_heat_map_api_gives_the_same_percentiles(peers):
    client = api_client(StaffUserFactory())
    response = client.get(
        "/api/v1/kpi-heat-map/",
        {"grain": "quarter", "period": "2026-Q1", "metrics": "win_rate_sourced,cac", "only": "gold"},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["period"], body["group"], body["count"]) == ("2026-Q1", "tier", 4)
    d = next(r for r in body["results"] if r["name"] == "D")
    assert d["cells"][0] == {
        "metric": "win_rate_sourced",
        "value": "0.7500",
        "percentile": 100,
        "top": 34,
        "bottom": 100,
        "peers": 3,
    }
    bad = client.get("/api/v1/kpi-heat-map/", {"metrics": "won_revenue,nope", "period": "2026-Q7"})
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]) == {"metrics", "period"}


def test_forecast_api(pipeline):
    forecast_snapshot_compute()
    client = api_client(StaffUserFactory())
    response = client.get("/api/v1/kpi-forecast/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {
        *("count", "next", "previous"),
        *("quarter", "as_of", "rates", "program", "join_sources", "partners", "backtest"),
    }
    assert len(body["backtest"]) == 4


def test_forecast_api_pages_the_partners_largest_forecast_first(pipeline):
    forecast_snapshot_compute(as_of=date(2026, 7, 15), now=kt.at("2026-07-15 12:00"))
    client = api_client(StaffUserFactory())

    first = client.get("/api/v1/kpi-forecast/", {"page_size": 1}).json()
    # test_forecast_by_hand: Alpha 1200.00 sourced + 300.00 influenced, Bravo 300.00 influenced.
    assert (first["count"], first["previous"]) == (2, None)
    assert (first["quarter"], first["as_of"]) == ("2026-Q4", "2026-07-15")
    assert [(p["name"], p["sourced"], p["influenced"]) for p in first["partners"]] == [
        ("Alpha", "1200.00", "300.00")
    ]
    assert (first["program"]["sourced"], first["program"]["influenced"]) == ("1200.00", "300.00")
    assert first["next"].endswith("/api/v1/kpi-forecast/?page=2&page_size=1")

    second = client.get(first["next"]).json()
    assert [(p["name"], p["sourced"], p["influenced"]) for p in second["partners"]] == [
        ("Bravo", "0.00", "300.00")
    ]
    assert (second["count"], second["next"]) == (2, None)
    assert second["previous"].endswith("/api/v1/kpi-forecast/?page_size=1")
    # Every page carries the whole forecast besides its partners.
    for field in ("quarter", "as_of", "rates", "program", "join_sources", "backtest"):
        assert second[field] == first[field]

    whole = client.get("/api/v1/kpi-forecast/").json()
    assert [p["name"] for p in whole["partners"]] == ["Alpha", "Bravo"]
    assert whole["next"] is None
    assert client.get("/api/v1/kpi-forecast/", {"page": 3}).status_code == 404


@pytest.mark.parametrize("path", ["/api/v1/kpi-heat-map/", "/api/v1/kpi-forecast/"])
def test_insight_apis_refuse_partners(peers, path):
    client = api_client(PartnerUserFactory(partner=peers["a"]).user)
    assert client.get(path).status_code == 403


def test_portal_shows_a_partner_admin_its_own_forecast_only(client, pipeline):
    from partners.models import PartnerUser

    client.force_login(PartnerUserFactory(partner=pipeline["bravo"]).user)
    forecast_snapshot_compute()
    response = client.get(reverse("portal:forecast"))
    assert response.status_code == 200
    own = response.context["own"]
    assert own.name == "Bravo" and own.sourced == Decimal("0.00")
    assert "Alpha" not in response.content.decode()
    member = PartnerUserFactory(partner=pipeline["alpha"], role=PartnerUser.Role.MEMBER)
    client.force_login(member.user)
    assert client.get(reverse("portal:forecast")).status_code == 403
