"""Issue 19, item 5: the pages people expect. Values computed by hand from small published sets."""

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from deals.models import DealRegistration
from deals.services import registration_submit
from kpis import formatting
from kpis.ranges import MonthRange, month_range
from kpis.readers import Card
from partners.selectors import tiers_in_order
from portal.views import year_to_date
from tests.factories import (
    DealFactory,
    DealRegistrationFactory,
    JoinSourceFactory,
    PartnerFactory,
    PartnerUserFactory,
    StaffUserFactory,
    UserFactory,
)
from tests.support.dashboards import publish

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager_client(client):
    client.force_login(StaffUserFactory())
    return client


def card(html: str, metric: str) -> str:
    match = re.search(rf'<li class="card kpi-card" data-metric="{metric}".*?</li>', html, re.S)
    assert match, f"no card for {metric}"
    return match.group(0)


# --- Cards: compact money, change, trend -----------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("2215300.00", "$2.22M"),
        ("12345.00", "$12.3K"),
        ("123456.00", "$123K"),
        ("999999.00", "$1.00M"),  # not "$1000K"
        ("950.40", "$950.40"),  # exact below a thousand
        ("999.996", "$1.00K"),
        ("-5000.00", "−$5.00K"),
        ("1050000000.00", "$1.05B"),
    ],
)
def test_compact_money_keeps_three_significant_digits(amount, shown):
    assert formatting.compact_money(Decimal(amount)) == shown


def test_change_is_relative_for_amounts_and_in_points_for_rates():
    assert formatting.change("sourced_revenue", Decimal("110"), Decimal("100")) == "+10.0%"
    assert formatting.change("win_rate_sourced", Decimal("0.5"), Decimal("0.531")) == "−3.1 pts"
    assert formatting.change("leads_generated", Decimal("3"), Decimal("0")) == ""  # no base
    assert formatting.change("cac", None, Decimal("5")) == ""
    falling_cost = Card(metric="cac", value=Decimal("40"), previous=Decimal("50"))
    assert falling_cost.change_direction == "down" and falling_cost.change_is_good is True


def test_overview_card_shows_compact_value_exact_on_hover_change_and_trend(manager_client):
    publish(
        [
            (None, "2026-03", "won_revenue", "3000000.00"),
            (None, "2026-03", "sourced_revenue", "2215300.00"),
            (None, "2026-02", "sourced_revenue", "2000000.00"),
            (None, "2025-12", "sourced_revenue", "1000000.00"),
        ]
    )
    html = manager_client.get(reverse("dashboards:overview"), {"period": "2026-03"}).content.decode()
    sourced = card(html, "sourced_revenue")
    assert '<span title="$2,215,300.00" data-exact="$2,215,300.00">$2.22M</span>' in sourced
    # (2,215,300 − 2,000,000) / 2,000,000 = 10.765% → +10.8%, an improvement
    assert 'kpi-card__change--good" data-change="up"' in sourced and "+10.8%" in sourced
    assert '<svg class="sparkline"' in sourced and "2025-04 to 2026-03" in sourced
    # 12 points; January has no stored row and reads 0 (a money sum), so the line is unbroken.
    points = re.search(r'<polyline points="([^"]+)"', sourced).group(1).split()
    assert len(points) == 12


# --- Custom range of months, tier / type / join source ---------------------------------------------


def test_month_range_validates_and_knows_its_neighbours():
    span = month_range("2026-01", "2026-03")
    assert span.label == "2026-01 to 2026-03" and span.months == 3
    assert span.previous == MonthRange(
        month_range("2025-10", "2025-10").first, month_range("2025-12", "2025-12").first
    )
    assert span.year_earlier.label == "2025-01 to 2025-03"
    with pytest.raises(ValueError, match="ends"):
        month_range("2026-03", "2026-01")
    with pytest.raises(ValueError):
        month_range("2026-Q1", "2026-03")


def test_custom_range_sums_additive_metrics_recomputes_ratios_and_refuses_medians(manager_client):
    publish(
        [
            (None, "2026-01", "won_revenue", "1000.00"),
            (None, "2026-01", "sourced_revenue", "400.00"),
            (None, "2026-01", "program_cost", "100.00"),
            (None, "2026-01", "new_customers_sourced", "1"),
            (None, "2026-01", "win_rate_sourced", "0.5000"),
            (None, "2026-02", "won_revenue", "3000.00"),
            (None, "2026-02", "sourced_revenue", "600.00"),
            (None, "2026-02", "program_cost", "200.00"),
            (None, "2026-02", "new_customers_sourced", "2"),
            (None, "2026-02", "win_rate_sourced", "1.0000"),
            (None, "2025-12", "sourced_revenue", "250.00"),  # the previous two months: Nov + Dec 2025
        ]
    )
    response = manager_client.get(reverse("dashboards:overview"), {"start": "2026-01", "end": "2026-02"})
    cards = {c.metric: c for c in response.context["cards"]}
    assert cards["sourced_revenue"].value == Decimal("1000.00")
    assert cards["sourced_revenue"].previous == Decimal("250.00")
    # sourced share = 1000 / 4000; CAC = 300 / 3; ROI = (1000 − 300) / 300 = 2.3333
    assert cards["sourced_share"].value == Decimal("0.2500")
    assert cards["cac"].value == Decimal("100.00")
    assert cards["roi"].value == Decimal("2.3333")
    # Never the average of the monthly rates (0.75): undefined, with the reason on the card.
    assert cards["win_rate_sourced"].value is None
    html = response.content.decode()
    assert "Not defined for a custom range" in card(html, "win_rate_sourced")
    assert "2026-01 to 2026-02" in html


def test_a_reversed_range_falls_back_to_the_period_with_a_warning(manager_client):
    publish([(None, "2026-03", "won_revenue", "1.00")])
    response = manager_client.get(
        reverse("dashboards:overview"), {"period": "2026-03", "start": "2026-05", "end": "2026-01"}
    )
    assert response.status_code == 200
    assert response.context["span"].label == "2026-03"
    assert "before it starts" in response.content.decode()


def test_overview_for_a_tier_adds_up_its_partners_and_leaves_influenced_undefined(manager_client):
    gold_a, gold_b = PartnerFactory(tier="gold"), PartnerFactory(tier="gold")
    silver = PartnerFactory(tier="silver")
    publish(
        [
            (None, "2026-03", "won_revenue", "9999.00"),
            (gold_a, "2026-03", "sourced_revenue", "300.00"),
            (gold_b, "2026-03", "sourced_revenue", "200.00"),
            (silver, "2026-03", "sourced_revenue", "7000.00"),
            (gold_a, "2026-03", "program_cost", "100.00"),
            (gold_a, "2026-03", "new_customers_sourced", "2"),
            (gold_a, "2026-03", "influenced_revenue", "50.00"),
            (gold_b, "2026-03", "influenced_revenue", "50.00"),  # maybe the same deal: not summable
        ]
    )
    response = manager_client.get(reverse("dashboards:overview"), {"period": "2026-03", "tier": "gold"})
    cards = {c.metric: c for c in response.context["cards"]}
    assert cards["sourced_revenue"].value == Decimal("500.00")
    assert cards["cac"].value == Decimal("50.00")
    assert cards["roi"].value == Decimal("4.0000")  # (500 − 100) / 100
    assert cards["influenced_revenue"].value is None
    assert "gold partners" in response.content.decode()


def test_overview_for_a_join_source_reads_its_published_scope(manager_client):
    web = JoinSourceFactory(name="Website")
    publish([(None, "2026-03", "sourced_revenue", "9000.00"), (web, "2026-03", "sourced_revenue", "1234.00")])
    response = manager_client.get(
        reverse("dashboards:overview"), {"period": "2026-03", "join_source": web.pk}
    )
    cards = {c.metric: c for c in response.context["cards"]}
    assert cards["sourced_revenue"].value == Decimal("1234.00")
    assert "Not published per join source" in card(response.content.decode(), "sourced_share")


def test_leaderboard_over_a_custom_range_sums_each_partner_and_sorts_on_it(manager_client):
    a, b = PartnerFactory(name="A"), PartnerFactory(name="B")
    publish(
        [
            (a, "2026-01", "sourced_revenue", "100.00"),
            (a, "2026-02", "sourced_revenue", "100.00"),
            (b, "2026-02", "sourced_revenue", "150.00"),
            (b, "2026-04", "sourced_revenue", "900.00"),  # outside the range
            (a, "2026-01", "win_rate_sourced", "1.0000"),
        ]
    )
    response = manager_client.get(reverse("dashboards:partners"), {"start": "2026-01", "end": "2026-03"})
    rows = [(p.name, p.kpi_sourced_revenue, p.kpi_win_rate_sourced) for p in response.context["page"]]
    assert rows == [("A", Decimal("200.00"), None), ("B", Decimal("150.00"), None)]


# --- Tiers, managers ---------------------------------------------------------------------------------


def test_tiers_are_listed_in_tier_order_not_alphabetically(manager_client):
    for tier in ("silver", "gold", "platinum", "registered", "Zeta"):
        PartnerFactory(tier=tier)
    assert tiers_in_order() == ["platinum", "gold", "silver", "registered", "Zeta"]
    html = manager_client.get(reverse("dashboards:partners")).content.decode()
    assert html.index('value="platinum"') < html.index('value="gold"') < html.index('value="silver"')


def test_managers_are_named_and_ordered_by_name(manager_client):
    zed = UserFactory(username="aaa", first_name="Zoe", last_name="Young")
    amy = UserFactory(username="zzz", first_name="Amy", last_name="Adams")
    PartnerFactory(manager=zed)
    PartnerFactory(manager=amy)
    html = manager_client.get(reverse("dashboards:partners")).content.decode()
    assert html.index(">Amy Adams</option>") < html.index(">Zoe Young</option>")


# --- Review queue -------------------------------------------------------------------------------------


def _claim(partner, domain, **kwargs):
    return registration_submit(
        partner=partner,
        account_name=domain.split(".")[0].title(),
        domain=domain,
        amount=Decimal("100"),
        **kwargs,
    )


def test_queue_filters_conflicts_partner_and_age(manager_client):
    alpha, bravo = PartnerFactory(name="Alpha", key="P-ALPHA"), PartnerFactory(name="Bravo")
    now = timezone.now()
    old = _claim(alpha, "old.example", submitted_at=now - timedelta(days=20))
    first = _claim(alpha, "shared.example", submitted_at=now - timedelta(days=2))
    second = _claim(bravo, "shared.example", submitted_at=now - timedelta(days=1))
    url = reverse("dashboards:registrations")

    def ids(**params):
        return [row["registration"].pk for row in manager_client.get(url, params).context["rows"]]

    assert ids() == [old.pk, first.pk, second.pk]
    assert ids(conflicts="on") == [second.pk]
    assert ids(partner=alpha.pk) == [old.pk, first.pk]
    # Typed, not picked from a list of every partner: its name (any case) or key works too.
    assert ids(partner="bravo") == [second.pk]
    assert ids(partner=alpha.key) == [old.pk, first.pk]
    unknown = manager_client.get(url, {"partner": "Nobody"})
    assert unknown.context["filters"].errors == {"partner": ["No partner has this key, name or id."]}
    assert ids(age="14") == [old.pk]


def test_bulk_reject_needs_a_reason_and_bulk_approve_reports_each_refusal_at_the_top(manager_client):
    alpha, bravo = PartnerFactory(name="Alpha"), PartnerFactory(name="Bravo")
    clean = _claim(alpha, "clean.example")
    first = _claim(alpha, "shared.example")
    conflicting = _claim(bravo, "shared.example")
    url = reverse("dashboards:registrations")

    refused = manager_client.post(url, {"bulk": "reject", "selected": [clean.pk]}, follow=True)
    assert "Bulk decision not recorded: A reason is required to reject" in refused.content.decode()
    clean.refresh_from_db()
    assert clean.status == "submitted"

    response = manager_client.post(
        url, {"bulk": "approve", "selected": [clean.pk, conflicting.pk]}, follow=True
    )
    html = response.content.decode()
    assert "1 registration approved." in html
    assert f"Not approved: #{conflicting.pk} Shared (Bravo):" in html
    clean.refresh_from_db(), conflicting.refresh_from_db(), first.refresh_from_db()
    assert (clean.status, conflicting.status, first.status) == ("approved", "submitted", "submitted")
    # The decision history lists it, with who decided.
    history = response.context["history"]
    assert [r.pk for r in history] == [clean.pk]


def test_a_refused_single_decision_is_said_at_the_top_and_on_its_card(manager_client):
    alpha, bravo = PartnerFactory(name="Alpha"), PartnerFactory(name="Bravo")
    _claim(alpha, "shared.example")
    conflicting = _claim(bravo, "shared.example")
    response = manager_client.post(
        reverse("dashboards:registrations"),
        {"registration": conflicting.pk, f"r{conflicting.pk}-decision": "approve"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    top = html.index('<ul class="messages"')
    card_at = html.index(f'data-registration="{conflicting.pk}"')
    assert top < card_at
    assert f"Registration #{conflicting.pk}:" in html[top:card_at]
    assert 'class="errorlist' in html[card_at:] or "form-errors" in html[card_at:]


# --- Portal -----------------------------------------------------------------------------------------


@pytest.fixture
def partner_client(client):
    membership = PartnerUserFactory()
    client.force_login(membership.user)
    return client, membership.partner


def test_year_so_far_is_whole_months_compared_with_the_same_months_a_year_earlier(partner_client):
    client, partner = partner_client
    span = year_to_date(timezone.localdate())
    before = span.year_earlier
    publish(
        [
            (partner, span.first.label, "sourced_revenue", "300.00"),
            (partner, span.last.label, "leads_generated", "4"),
            (partner, before.first.label, "sourced_revenue", "200.00"),
            # The rest of that earlier year is not the same span and must not be compared with.
            (partner, before.last.shifted(1).label, "sourced_revenue", "5000.00")
            if span.months < 12
            else (partner, before.first.label, "leads_generated", "0"),
        ]
    )
    response = client.get(reverse("portal:home"))
    cards = {c.metric: c for c in response.context["cards"]}
    assert cards["sourced_revenue"].value == Decimal("300.00")
    assert cards["sourced_revenue"].previous == Decimal("200.00")
    assert cards["sourced_revenue"].change_display == "+50.0%"
    html = response.content.decode()
    assert "so far this year" in html and "Same months last year" in html
    assert "Deals won, all time" in html and "Registrations by status, all time" in html
    assert 'id="portal-revenue-chart"' in html and 'id="portal-leads-chart"' in html


def test_year_to_date_in_january_is_the_whole_previous_year():
    from datetime import date

    assert year_to_date(date(2026, 1, 15)).label == "2025-01 to 2025-12"
    assert year_to_date(date(2026, 4, 2)).label == "2026-01 to 2026-03"


def test_portal_home_shows_the_open_pipeline(partner_client):
    client, partner = partner_client
    DealFactory(sourcing_partner=partner, amount=Decimal("1000.00"))
    DealFactory(sourcing_partner=partner, amount=Decimal("500.00"))
    DealFactory(sourcing_partner=partner, amount=Decimal("7.00"), status="won", closed_at=timezone.now())
    DealFactory(amount=Decimal("999.00"))  # not the partner's
    DealRegistrationFactory(partner=partner, amount=Decimal("250.00"))
    html = client.get(reverse("portal:home")).content.decode()
    assert '<dd data-fact="pipeline_sourced">2 · $1,500.00</dd>' in html
    assert '<dd data-fact="pipeline_pending">1 · $250.00</dd>' in html


def test_portal_lists_search_and_filter_by_status_across_pages(partner_client):
    client, partner = partner_client
    for i in range(3):
        DealRegistrationFactory(
            partner=partner, account__name=f"Initech {i}", account__domain=f"initech{i}.com"
        )
    DealRegistrationFactory(partner=partner, account__name="Globex", account__domain="globex.com")
    DealRegistrationFactory(
        partner=partner, account__name="Initech old", status="rejected", decided_at=timezone.now()
    )
    url = reverse("portal:registrations")
    names = lambda **q: sorted(r.account.name for r in client.get(url, q).context["registrations"])  # noqa: E731
    assert names(q="initech") == ["Initech 0", "Initech 1", "Initech 2", "Initech old"]
    assert names(q="initech", status="rejected") == ["Initech old"]
    assert names(q="globex.com") == ["Globex"]
    assert client.get(url, {"q": "initech", "status": "x"}).context["query"] == "q=initech"

    DealFactory(sourcing_partner=partner, name="Big renewal")
    DealFactory(sourcing_partner=partner, name="Small pilot")
    deals = client.get(reverse("portal:deals"), {"q": "renewal"}).context["deals"]
    assert [d.name for d in deals] == ["Big renewal"]


# --- Fixes ------------------------------------------------------------------------------------------


def test_partner_page_does_not_call_the_partners_roi_the_programs(manager_client):
    partner = PartnerFactory()
    publish([(partner, "2026-03", "roi", "1.5000")])
    html = manager_client.get(
        reverse("dashboards:partner_detail", args=[partner.pk]), {"period": "2026-03"}
    ).content.decode()
    roi = card(html, "roi")
    assert "Program ROI" not in roi and "ROI (its sourced revenue against its costs)" in roi


def test_attribution_total_row_fills_sourced_and_influenced(manager_client):
    from tests.factories import TouchFactory

    alpha, bravo = PartnerFactory(name="Alpha"), PartnerFactory(name="Bravo")
    closed = timezone.make_aware(timezone.datetime(2026, 3, 10, 12))
    DealFactory(
        sourcing_partner=alpha,
        amount=Decimal("100.00"),
        status="won",
        closed_at=closed,
        created_at=closed - timedelta(days=5),
    )
    shared = DealFactory(
        amount=Decimal("40.00"), status="won", closed_at=closed, created_at=closed - timedelta(days=5)
    )
    TouchFactory(deal=shared, partner=alpha, touched_at=closed - timedelta(days=2))
    TouchFactory(deal=shared, partner=bravo, touched_at=closed - timedelta(days=1))
    html = manager_client.get(reverse("dashboards:attribution"), {"period": "2026-03"}).content.decode()
    # Sourced 100; influenced 40 once (the cells say 40 for Alpha and for Bravo).
    assert '<td class="num" data-total="sourced">$100.00</td>' in html
    assert (
        'data-total="influenced"' in html and ">$40.00</td>" in html.split('data-total="influenced"')[1][:200]
    )


def test_redoc_may_not_load_images_from_a_cdn(client):
    client.force_login(StaffUserFactory())
    html = client.get(reverse("api:redoc")).content.decode()
    assert '<meta http-equiv="Content-Security-Policy" content="img-src \'self\' data: blob:">' in html


def test_favicon_ico_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"].endswith("favicon.ico")


def test_pages_use_one_date_format(partner_client):
    from django.test import Client

    client, partner = partner_client
    manager_client = Client()
    manager_client.force_login(StaffUserFactory())
    when = timezone.make_aware(timezone.datetime(2026, 3, 5, 9, 30))
    DealRegistrationFactory(
        partner=partner, submitted_at=when, expected_close_date=when.date() + timedelta(days=30)
    )
    html = manager_client.get(reverse("dashboards:registrations")).content.decode()
    assert "submitted 5 Mar 2026, 09:30" in html and "expected close 4 Apr 2026" in html
    listed = client.get(reverse("portal:registrations")).content.decode()
    assert "<td>5 Mar 2026</td>" in listed and "2026-03-05" not in listed


def test_a_partner_registering_a_customer_still_awaiting_review_gets_a_clear_error(partner_client):
    client, partner = partner_client
    first = _claim(partner, "acme.com")
    data = {
        "account_name": "Acme",
        "domain": "acme.com",
        "amount": "100",
        "action": "submit",
    }
    response = client.post(reverse("portal:register"), data)
    assert response.status_code == 400
    assert f"you already registered this customer and it awaits review: registration #{first.pk}" in (
        response.content.decode()
    )
    assert DealRegistration.objects.filter(partner=partner).count() == 1
    with pytest.raises(ValidationError):
        _claim(partner, "www.ACME.com")


def test_reconciliation_names_rows_instead_of_numbering_them(manager_client):
    from kpis.models import ReconciliationItem

    partner = PartnerFactory(name="Northwind")
    deal = DealFactory(name="Renewal", account__name="Acme")
    run = publish([])
    ReconciliationItem.objects.create(
        run=run,
        kind="sourced_before_joined",
        deal_id=deal.pk,
        partner_id=partner.pk,
        description="joined on 2026-03-01",
    )
    html = manager_client.get(reverse("dashboards:reconciliation")).content.decode()
    assert "Deal Renewal (Acme) is sourced by partner Northwind, which joined on 2026-03-01." in html
    assert "Partner Northwind" in html and f"Partner #{partner.pk}" not in html


def test_kpi_export_honours_scope_scope_key_and_periods(client):
    web = JoinSourceFactory(name="Website")
    partner = PartnerFactory()
    publish(
        [
            (None, "2026-01", "sourced_revenue", "1.00"),
            (partner, "2026-01", "sourced_revenue", "2.00"),
            (partner, "2026-02", "sourced_revenue", "3.00"),
            (partner, "2026-03", "sourced_revenue", "4.00"),
            (web, "2026-02", "sourced_revenue", "5.00"),
        ]
    )
    client.force_login(StaffUserFactory())
    response = client.get(
        reverse("api:kpi-export"),
        {"format": "csv", "scope": "partner", "scope_key": partner.export_key, "period_from": "2026-02"},
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["scope"], r["period"], r["value"]) for r in rows] == [
        ("partner", "2026-02", "3.00"),
        ("partner", "2026-03", "4.00"),
    ]
    bad = client.get(reverse("api:kpi-export"), {"period_from": "2026-Q1"})  # a quarter, grain month
    assert bad.status_code == 400 and "period_from" in bad.content.decode()


def test_api_root_lists_every_endpoint(client):
    client.force_login(StaffUserFactory())
    listed = client.get("/api/v1/", HTTP_ACCEPT="application/json").json()
    for name in (
        "partners",
        "kpi-values",
        "kpi-export",
        "kpi-attribution",
        "reconciliation",
        "changes",
        "imports",
        "schema",
        "docs",
        "redoc",
    ):
        assert name in listed, name


def test_api_example_keys_are_in_the_formats_real_rows_use():
    from api import examples
    from interchange.demo import account_key, deal_key, partner_key

    assert examples.PARTNER["key"] == partner_key(examples.PARTNER["id"] - 1)
    assert examples.ACCOUNT["key"] == account_key(examples.ACCOUNT["id"] - 1)
    assert examples.DEAL["key"] == deal_key(examples.DEAL["id"] - 1)
    assert examples.KPI_VALUE["scope_key"] == examples.PARTNER["key"]
    assert examples.JOIN_SOURCE["key"].startswith("js-") and examples.JOIN_SOURCE["key"].islower()
