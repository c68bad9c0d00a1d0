"""Staff dashboards: who may open them and that they show the published numbers, within a query budget."""

import re

import pytest
from django.urls import reverse

from partners.roles import StaffRole
from tests.factories import (
    JoinSourceFactory,
    PartnerFactory,
    PartnerUserFactory,
    StaffUserFactory,
)
from tests.support.dashboards import publish

pytestmark = pytest.mark.django_db

STAFF_PAGES = [
    "dashboards:overview",
    "dashboards:join_sources",
    "dashboards:partners",
    "dashboards:registrations",
    "dashboards:attribution",
    "dashboards:reconciliation",
]


@pytest.fixture
def manager_client(client):
    client.force_login(StaffUserFactory())
    return client


@pytest.fixture
def program_march():
    """Program numbers for 2026-03 with February and March 2025 to compare with, and a target."""
    return publish(
        [
            (None, "2026-03", "won_revenue", "10000.00"),
            (None, "2026-03", "sourced_revenue", "4000.00"),
            (None, "2026-03", "influenced_revenue", "2500.00"),
            (None, "2026-03", "attributed_revenue", "6500.00"),
            (None, "2026-03", "sourced_share", "0.4000"),
            (None, "2026-03", "active_partners", "7"),
            (None, "2026-03", "activation_rate", "0.5000"),
            (None, "2026-03", "ttfs_median_days", "31.5"),
            (None, "2026-03", "cac", None),
            (None, "2026-03", "roi", "1.2500"),
            (None, "2026-03", "win_rate_sourced", "0.6667"),
            (None, "2026-02", "won_revenue", "8000.00"),
            (None, "2026-02", "sourced_revenue", "3000.00"),
            (None, "2026-02", "influenced_revenue", "1000.00"),
            (None, "2025-03", "sourced_revenue", "1500.00"),
            (None, "2026-03", "target", "5000.0", "sourced_revenue"),
            (None, "2026-03", "target_progress", "0.8000", "sourced_revenue"),
        ]
    )


def card(html: str, metric: str) -> str:
    match = re.search(rf'<li class="card kpi-card" data-metric="{metric}".*?</li>', html, re.S)
    assert match, f"no card for {metric}"
    return match.group(0)


@pytest.mark.parametrize("name", STAFF_PAGES)
def test_anonymous_visitors_are_sent_to_log_in(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", STAFF_PAGES)
def test_partner_users_are_refused_every_staff_page(client, name):
    client.force_login(PartnerUserFactory().user)
    assert client.get(reverse(name)).status_code == 403


def test_home_sends_staff_to_the_overview_and_partners_to_their_portal(client):
    client.force_login(StaffUserFactory(role=StaffRole.SALES_OPS))
    assert client.get(reverse("home"))["Location"] == reverse("dashboards:overview")
    client.force_login(PartnerUserFactory().user)
    assert client.get(reverse("home"))["Location"] == reverse("portal:home")


def test_overview_cards_show_value_previous_year_ago_and_target(manager_client, program_march):
    html = manager_client.get(reverse("dashboards:overview"), {"grain": "month", "period": "2026-03"}).content
    html = html.decode()
    sourced = card(html, "sourced_revenue")
    assert 'data-value="4000.00"' in sourced
    assert "$4,000.00" in sourced
    assert '<dd data-compare="previous" data-value="3000.00">$3,000.00</dd>' in sourced
    assert '<dd data-compare="year_ago" data-value="1500.00">$1,500.00</dd>' in sourced
    assert "$5,000.00 (80.0%)" in sourced
    assert 'aria-valuenow="80"' in sourced
    assert "40.0%" in card(html, "sourced_share")
    assert "31.5 days" in card(html, "ttfs_median_days")
    # CAC with no new customers is undefined: a dash, never 0.
    # Undefined, yet its rows (the costs, no new customer) are one click away (the drill-down).
    assert 'title="The rows behind this value">—</a></p>' in card(html, "cac")


def test_overview_revenue_chart_splits_won_revenue_into_sourced_influenced_and_direct(
    manager_client, program_march
):
    response = manager_client.get(reverse("dashboards:overview"), {"grain": "month", "period": "2026-03"})
    chart = response.context["revenue_chart"]
    rows = dict((label, values) for label, values in chart["rows"])
    assert [str(v) for v in rows["2026-03"]] == ["4000.0000", "2500.0000", "3500.0000"]
    assert [str(v) for v in rows["2026-02"]] == ["3000.0000", "1000.0000", "4000.0000"]
    assert chart["labels"][0] == "2025-04" and chart["labels"][-1] == "2026-03"


def test_overview_defaults_to_the_newest_published_period(manager_client, program_march):
    response = manager_client.get(reverse("dashboards:overview"))
    assert response.context["period"].label == "2026-03"


def test_overview_says_when_the_data_was_computed(manager_client, program_march):
    html = manager_client.get(reverse("dashboards:overview")).content.decode()
    assert f"KPI run #{program_march.pk}" in html
    assert "Recompute now" in html


def test_overview_stays_within_its_query_budget(manager_client, program_march, django_assert_max_num_queries):
    # 12 before the trend line (one query), the join sources and the tiers of the filter form.
    with django_assert_max_num_queries(15):
        assert manager_client.get(reverse("dashboards:overview")).status_code == 200


def test_join_sources_page_shows_the_funnel_per_source(manager_client):
    web, event = JoinSourceFactory(name="Website"), JoinSourceFactory(name="Events")
    publish(
        [
            (None, "2026-03", "won_revenue", "1.00"),
            (web, "2026-03", "applications", "10"),
            (web, "2026-03", "partners_joined", "4"),
            (web, "2026-03", "activation_rate", "0.7500"),
            (web, "2026-03", "activated_partners", "3"),
            (web, "2026-03", "first_sales", "2"),
            (web, "2026-03", "ttfs_median_days", "20.5"),
            (web, "2026-03", "cac", "250.00"),
            (event, "2026-03", "applications", "3"),
        ]
    )
    response = manager_client.get(reverse("dashboards:join_sources"), {"period": "2026-03"})
    rows = {r["source"].name: r for r in response.context["rows"]}
    assert rows["Website"]["activated"] == 3
    assert rows["Events"]["activated"] is None
    html = response.content.decode()
    assert "75.0%" in html and "20.5 days" in html and "$250.00" in html


def test_leaderboard_sorts_by_sourced_revenue_and_filters_by_type(manager_client):
    a = PartnerFactory(name="Alpha", type="reseller")
    b = PartnerFactory(name="Bravo", type="agency")
    c = PartnerFactory(name="Charlie", type="reseller")
    publish(
        [
            (None, "2026-03", "won_revenue", "1.00"),
            (a, "2026-03", "sourced_revenue", "100.00"),
            (b, "2026-03", "sourced_revenue", "300.00"),
            (c, "2026-03", "sourced_revenue", "200.00"),
        ]
    )
    url = reverse("dashboards:partners")
    page = manager_client.get(url, {"period": "2026-03"}).context["page"]
    assert [p.name for p in page] == ["Bravo", "Charlie", "Alpha"]
    page = manager_client.get(url, {"period": "2026-03", "type": "reseller", "direction": "asc"}).context[
        "page"
    ]
    assert [p.name for p in page] == ["Alpha", "Charlie"]


def test_leaderboard_csv_exports_the_filtered_view(manager_client):
    a = PartnerFactory(name="Alpha", type="reseller", key="p-alpha")
    PartnerFactory(name="Bravo", type="agency")
    publish([(None, "2026-03", "won_revenue", "1.00"), (a, "2026-03", "sourced_revenue", "100.00")])
    response = manager_client.get(
        reverse("dashboards:partners"), {"period": "2026-03", "type": "reseller", "format": "csv"}
    )
    assert response.streaming  # one line per partner as they are read, never the whole file at once
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert response["Content-Type"].startswith("text/csv")
    assert len(lines) == 2
    assert lines[1].startswith("p-alpha,Alpha,reseller,")
    # No stored row reads 0 for money and counts, and stays undefined (empty) for a ratio.
    assert lines[1].endswith(",2026-03,100.00,0.00,0.00,,0")


def test_leaderboard_query_count_does_not_grow_with_partners(manager_client, django_assert_max_num_queries):
    partners = PartnerFactory.create_batch(30)
    publish(
        [(None, "2026-03", "won_revenue", "1.00")]
        + [(p, "2026-03", "sourced_revenue", "1.00") for p in partners]
    )
    with django_assert_max_num_queries(12):
        response = manager_client.get(reverse("dashboards:partners"), {"period": "2026-03"})
    assert len(response.context["page"]) == 25


def test_partner_page_shows_its_kpis_and_is_404_for_an_unknown_partner(
    manager_client, django_assert_max_num_queries
):
    partner = PartnerFactory(name="Alpha")
    publish([(None, "2026-03", "won_revenue", "1.00"), (partner, "2026-03", "sourced_revenue", "123.45")])
    # 17 before onboarding, +6: logins, pending invitations, the invite form's role check and the
    # history (content types, trail entries, the rows its changes name).
    # +1: the peer standing (its tier, type and join source in one query); +1: the cards' trend lines.
    with django_assert_max_num_queries(25):
        response = manager_client.get(
            reverse("dashboards:partner_detail", args=[partner.pk]), {"period": "2026-03"}
        )
    assert 'data-value="123.45"' in card(response.content.decode(), "sourced_revenue")
    assert (
        manager_client.get(reverse("dashboards:partner_detail", args=[partner.pk + 999])).status_code == 404
    )


def test_leaderboard_filters_by_tier_join_source_manager_and_status(manager_client):
    web, events = JoinSourceFactory(name="Web"), JoinSourceFactory(name="Events")
    maria = StaffUserFactory(username="maria")
    PartnerFactory(name="Gold web", tier="gold", join_source=web, manager=maria)
    PartnerFactory(name="Gold events", tier="gold", join_source=events, manager=maria)
    PartnerFactory(name="Silver web", tier="silver", join_source=web)
    PartnerFactory(name="Churned web", tier="gold", join_source=web, manager=maria, status="churned")
    publish([(None, "2026-03", "won_revenue", "1.00")])

    def names(**params):
        response = manager_client.get(
            reverse("dashboards:partners"), {"period": "2026-03", "sort": "name", **params}
        )
        return [p.name for p in response.context["page"]]

    assert names(tier="gold", join_source=web.pk, direction="asc") == ["Churned web", "Gold web"]
    assert names(manager=maria.pk, status="active", direction="asc") == ["Gold events", "Gold web"]
    assert names(q="silver") == ["Silver web"]


def test_switching_grain_keeps_the_place_and_a_bad_period_is_explained(manager_client, program_march):
    def shown(grain, period):
        return manager_client.get(reverse("dashboards:overview"), {"grain": grain, "period": period})

    assert shown("quarter", "2026-03").context["period"].label == "2026-Q1"
    assert shown("year", "2026-03").context["period"].label == "2026"
    assert shown("month", "2026-Q1").context["period"].label == "2026-03"
    response = shown("month", "2026-13")
    assert response.context["period"].label == "2026-03"
    assert "“2026-13” is not a period like 2026-03, 2026-Q1 or 2026; showing 2026-03 instead." in (
        response.content.decode()
    )
