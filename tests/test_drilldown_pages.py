"""Drill-down pages and downloads, by role: staff open any value, a partner only its own; the rows
shown add up to the published value; a fixed number of queries per page."""

import csv
import io
from decimal import Decimal

import pytest
from django.test import Client

from partners.models import PartnerUser
from partners.roles import StaffRole
from tests.factories import PartnerUserFactory, StaffUserFactory, UserFactory
from tests.test_kpi_drilldown import build_program

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def program():
    return build_program()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def manager():
    return client_for(StaffUserFactory())


@pytest.fixture
def salesops():
    return client_for(StaffUserFactory(role=StaffRole.SALES_OPS))


def portal_user(partner, role=PartnerUser.Role.ADMIN) -> Client:
    return client_for(PartnerUserFactory(partner=partner, role=role).user)


def shown(response) -> tuple[str, str]:
    """The published value and what the rows add up to, as the page's data attributes say."""
    html = response.content.decode()
    published = html.split('data-published="')[1].split('"')[0]
    adds_up = html.split('data-adds-up-to="')[1].split('"')[0]
    return published, adds_up


@pytest.mark.parametrize("who", ["manager", "salesops"])
def test_staff_open_the_rows_behind_program_join_source_and_partner_values(program, who, request):
    client = request.getfixturevalue(who)
    a, web = program["a"], program["web"]
    cases = [
        ("/dashboard/drill/influenced_revenue/?period=2026-03", "250.00", 2),
        (f"/dashboard/drill/attributed_revenue/?period=2026-03&partner={a.pk}", "425.00", 3),
        (f"/dashboard/drill/opportunities_influenced/?period=2026-Q1&join_source={web.pk}", "2", 2),
        (f"/dashboard/drill/win_rate_sourced/?period=2026-03&partner={a.pk}", "0.5000", 2),
        ("/dashboard/drill/sales_cycle_median_days_sourced/?period=2026", "10.0", 1),
        ("/dashboard/drill/cac/?period=2026-03&part=denominator", "1570.00", 1),
        (f"/dashboard/drill/activation_rate/?period=2026-01&join_source={web.pk}", "1.0000", 1),
        ("/dashboard/drill/active_partners/?period=2026-03", "3", 3),
        (f"/dashboard/drill/program_cost/?period=2026-03&join_source={web.pk}", "530.00", 2),
        (f"/dashboard/drill/commission_paid/?period=2026-03&partner={a.pk}", "30.00", 1),
        (
            f"/dashboard/drill/mdf_return/?period=2026-03&partner={program['c'].pk}&part=numerator",
            "1.2500",
            1,
        ),
    ]
    for url, value, rows in cases:
        response = client.get(url)
        assert response.status_code == 200, url
        assert shown(response) == (value, value), url
        assert response.content.decode().count('data-col="') // len(response.context["columns"]) == rows, url


def test_a_partner_drills_into_its_own_rows_only(program):
    a, b = program["a"], program["b"]
    for role in (PartnerUser.Role.ADMIN, PartnerUser.Role.MEMBER):
        client = portal_user(a, role)
        response = client.get("/portal/drill/influenced_revenue/?period=2026-03")
        assert response.status_code == 200
        assert shown(response) == ("250.00", "250.00")
        # Its own attribution shares only: never B's share of the deal they both touched.
        response = client.get("/portal/drill/attributed_revenue/?period=2026-03")
        assert {r["partner"] for r in response.context["drill"].rows} == {"A"}
        assert shown(response) == ("425.00", "425.00")
        # Another partner's values are a 404; the staff drill-down a 403.
        assert (
            client.get(f"/portal/drill/influenced_revenue/?period=2026-03&partner={b.pk}").status_code == 404
        )
        assert (
            client.get(f"/dashboard/drill/influenced_revenue/?period=2026-03&partner={b.pk}").status_code
            == 403
        )
        # Program-only metrics do not exist for a partner.
        assert client.get("/portal/drill/won_revenue/?period=2026-03").status_code == 404
    # B sees its own influenced deal (X) only.
    response = portal_user(b).get("/portal/drill/influenced_revenue/?period=2026-03")
    assert [r["amount"] for r in response.context["drill"].rows] == [D("200.00")]


def test_bad_input_is_a_400_or_404_and_outsiders_get_403(program, manager):
    assert manager.get("/dashboard/drill/won_revenue/?period=2026-13").status_code == 400
    assert manager.get("/dashboard/drill/won_revenue/").status_code == 400
    assert manager.get("/dashboard/drill/nope/?period=2026-03").status_code == 404
    assert manager.get("/dashboard/drill/won_revenue/?period=2026-03&partner=999999").status_code == 404
    assert manager.get("/dashboard/drill/won_revenue/?period=2026-03&partner=x").status_code == 404
    assert (
        manager.get("/dashboard/drill/won_revenue/?period=2026-03&sort=nope;drop&page=x").status_code == 200
    )
    assert client_for(UserFactory()).get("/dashboard/drill/won_revenue/?period=2026-03").status_code == 403


def test_the_csv_download_holds_every_row_and_adds_up(program, manager):
    response = manager.get("/dashboard/drill/won_revenue/?period=2026-03&format=csv&sort=-amount")
    assert response.streaming
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["amount"] for r in rows] == ["450.00", "300.00", "200.00", "50.00"]
    assert sum(D(r["amount"]) for r in rows) == D("1000.00")
    win = manager.get("/dashboard/drill/win_rate_direct/?period=2026-03&format=csv")
    lines = list(csv.DictReader(io.StringIO(b"".join(win.streaming_content).decode())))
    assert sorted(r["in_numerator"] for r in lines) == ["0", "1"]


def test_pages_sort_and_paginate_in_a_fixed_number_of_queries(
    program, manager, django_assert_max_num_queries
):
    from tests.support import kpis as t

    web = program["web"]
    for i in range(60):
        t.deal("10.00", created="2026-05-01 10:00", closed=f"2026-05-{1 + i % 28:02d} 12:00")
    t.recompute(as_of="2026-06-30")
    url = "/dashboard/drill/won_revenue/?period=2026-05"
    manager.get(url)  # warm the session and the program settings
    with django_assert_max_num_queries(13):
        first = manager.get(url + "&sort=-closed")
    with django_assert_max_num_queries(13):
        second = manager.get(url + "&sort=-closed&page=2")
    assert len(first.context["drill"].rows) == 50 and len(second.context["drill"].rows) == 10
    assert first.context["totals"].cents == 60000
    with django_assert_max_num_queries(13):
        assert manager.get(f"/dashboard/drill/cac/?period=2026-03&join_source={web.pk}").status_code == 200


def test_every_kpi_value_on_the_pages_links_to_its_rows(program, manager):
    a, web = program["a"], program["web"]
    overview = manager.get("/dashboard/?grain=month&period=2026-03").content.decode()
    assert "/dashboard/drill/sourced_revenue/?period=2026-03" in overview
    sources = manager.get("/dashboard/join-sources/?grain=month&period=2026-03").content.decode()
    assert f"/dashboard/drill/cac/?period=2026-03&amp;join_source={web.pk}" in sources
    board = manager.get("/dashboard/partners/?grain=month&period=2026-03").content.decode()
    assert f"/dashboard/drill/attributed_revenue/?period=2026-03&amp;partner={a.pk}" in board
    detail = manager.get(f"/dashboard/partners/{a.pk}/?grain=month&period=2026-03").content.decode()
    assert f"/dashboard/drill/first_sales/?period=2026-01&amp;partner={a.pk}" in detail
    # Chart points: the numbers under each chart link to their rows, and the chart's data carries them.
    assert overview.count('href="/dashboard/drill/influenced_revenue/?period=2026-03"') >= 2
    assert f"/dashboard/drill/partners_joined/?period=2026-03&amp;join_source={web.pk}" in sources
    assert f"/dashboard/drill/attributed_revenue/?period=2026-02&amp;partner={a.pk}" in detail
    home = portal_user(a).get("/portal/").content.decode()
    assert "/portal/drill/sourced_revenue/?period=2026" in home


def _staff_url(v) -> str:
    scope = {"partner": f"&partner={v.partner_id}", "join_source": f"&join_source={v.join_source_id}"}
    return f"/dashboard/drill/{v.metric}/?period={v.period}{scope.get(v.scope, '')}"


@pytest.mark.parametrize("who", ["manager", "salesops", "admin", "member"])
def test_for_every_family_and_role_the_page_rows_add_up_to_the_published_value(program, who, request):
    """Every published value of March and Q1 2026 a role may see: the page's rows add up to it."""
    from kpis.export import format_value
    from kpis.models import KpiValue

    a = program["a"]
    if who in ("manager", "salesops"):
        client = request.getfixturevalue(who)
        values = KpiValue.objects.filter(target_metric="", period__in=["2026-03", "2026-Q1"])
        url = _staff_url
    else:
        role = PartnerUser.Role.ADMIN if who == "admin" else PartnerUser.Role.MEMBER
        client = portal_user(a, role)
        values = KpiValue.objects.filter(target_metric="", partner=a)
        url = lambda v: f"/portal/drill/{v.metric}/?period={v.period}"  # noqa: E731
    families = set()
    for v in values:
        response = client.get(url(v))
        assert response.status_code == 200, url(v)
        expected = "" if v.value is None else format_value(v.metric, "", v.value)
        assert shown(response) == (expected, expected), (url(v), shown(response), expected)
        families |= {
            p.family for p in response.context["parts"] and [p for p, _ in response.context["parts"]]
        }
    everything = {
        "deals",
        "influence",
        "attribution",
        "registrations",
        "opportunities",
        "costs",
        "new_customers",
    }
    assert families >= everything | (
        {"applications", "cohort", "active"} if who in ("manager", "salesops") else set()
    )
    assert "first_sales" in families


def test_before_any_run_published_the_pages_say_so(manager):
    from tests.support.api import client_for as api_client

    response = manager.get("/dashboard/drill/won_revenue/?period=2026-03")
    assert response.status_code == 503
    assert "once a KPI run has published them" in response.content.decode()
    staff = StaffUserFactory(role=StaffRole.SALES_OPS)
    assert api_client(staff).get("/api/v1/kpi-drilldown/won_revenue/?period=2026-03").status_code == 503


def test_a_partners_deal_rows_link_to_its_deal_pages(program):
    a = program["a"]
    html = portal_user(a).get("/portal/drill/sourced_revenue/?period=2026-03").content.decode()
    from deals.models import Deal

    deal = Deal.objects.get(sourcing_partner=a, status="won")
    assert f'href="/portal/deals/{deal.pk}/"' in html


def test_the_explorer_links_the_published_models_cells_to_their_rows(program, manager):
    a = program["a"]
    html = manager.get("/dashboard/attribution/?grain=month&period=2026-03").content.decode()
    assert f"/dashboard/drill/attributed_revenue/?period=2026-03&amp;partner={a.pk}" in html
    assert f"/dashboard/drill/influenced_revenue/?period=2026-03&amp;partner={a.pk}" in html
