"""The partner portal: a partner sees and registers only its own business."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from deals.models import DealRegistration
from deals.services import registration_submit
from portal.views import year_to_date
from tests.factories import (
    DealFactory,
    DealRegistrationFactory,
    PartnerFactory,
    PartnerUserFactory,
    StaffUserFactory,
    TouchFactory,
)
from tests.support.dashboards import publish

pytestmark = pytest.mark.django_db
VALID = {
    "account_name": "Acme Corp",
    "domain": "https://www.Acme.com/",
    "amount": "12500.00",
    "notes": "Via CTO",
}


@pytest.fixture
def membership(client):
    member = PartnerUserFactory(partner=PartnerFactory(name="Alpha", key="alpha"))
    client.force_login(member.user)
    return member


def test_registering_a_deal_creates_a_submitted_registration_for_the_users_partner(client, membership):
    response = client.post(reverse("portal:register"), {**VALID, "action": "submit"})
    assert response.status_code == 302
    registration = DealRegistration.objects.get()
    assert registration.partner == membership.partner
    assert registration.submitted_by == membership.user
    assert (registration.account.domain, registration.amount) == ("acme.com", Decimal("12500.00"))
    assert response["Location"] == reverse("portal:registrations")
    page = client.get(response["Location"]).content.decode()
    assert "Acme Corp" in page and "Submitted" in page


def test_an_invalid_registration_shows_errors_tied_to_fields_and_keeps_what_was_typed(client, membership):
    response = client.post(reverse("portal:register"), {**VALID, "amount": "-5", "action": "submit"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'aria-describedby="id_amount_help id_amount_error"' in html
    assert 'aria-invalid="true"' in html
    assert 'value="Acme Corp"' in html and "Via CTO" in html and 'value="-5"' in html
    assert not DealRegistration.objects.exists()


def test_check_step_warns_of_another_partners_claim_without_naming_it(client, membership):
    rival = PartnerFactory(name="Rival Partner Ltd")
    registration_submit(
        partner=rival,
        account_name="Acme",
        domain="acme.com",
        amount=Decimal("1"),
        submitted_at=timezone.now() - timedelta(days=3),
    )
    html = client.post(reverse("portal:register"), {**VALID, "action": "check"}).content.decode()
    assert "Possible duplicate" in html
    assert "Rival Partner Ltd" not in html
    assert DealRegistration.objects.count() == 1  # checking registers nothing
    data = client.get(reverse("portal:conflicts"), {"domain": "ACME.com"}).json()
    assert data["domain"] == "acme.com" and len(data["conflicts"]) == 1
    assert client.get(reverse("portal:conflicts"), {"domain": "other.com"}).json()["conflicts"] == []


def test_check_step_says_so_when_nobody_else_claims_the_customer(client, membership):
    html = client.post(reverse("portal:register"), {**VALID, "action": "check"}).content.decode()
    assert "No other partner claims this customer." in html


def test_partners_get_404_for_another_partners_registration_and_deal(client, membership):
    other = PartnerFactory()
    theirs = DealRegistrationFactory(partner=other)
    their_deal = DealFactory(sourcing_partner=other)
    mine = DealRegistrationFactory(partner=membership.partner)
    assert client.get(reverse("portal:registration_detail", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("portal:deal_detail", args=[their_deal.pk])).status_code == 404
    assert client.get(reverse("portal:registration_detail", args=[mine.pk])).status_code == 200


def test_deal_list_holds_deals_the_partner_sourced_or_touched_only(client, membership):
    sourced = DealFactory(name="Sourced one", sourcing_partner=membership.partner)
    touched = DealFactory(name="Touched one")
    TouchFactory(deal=touched, partner=membership.partner)
    DealFactory(name="Someone else's")
    response = client.get(reverse("portal:deals"))
    assert {d.pk for d in response.context["deals"]} == {sourced.pk, touched.pk}


def test_staff_logins_cannot_use_the_portal(client):
    client.force_login(StaffUserFactory())
    assert client.get(reverse("portal:home")).status_code == 403


def test_home_shows_the_partners_published_kpis_and_registration_counts(
    client, membership, django_assert_max_num_queries
):
    span = year_to_date(timezone.localdate())
    partner = membership.partner
    first, last = span.first.label, span.last.label
    publish(
        [
            (None, first, "won_revenue", "9.00"),
            (partner, first, "sourced_revenue", "4000.00"),
            (partner, last, "sourced_revenue", "321.00")
            if last != first
            else (partner, first, "leads_generated", "1"),
        ]
    )
    DealRegistrationFactory(partner=partner)
    DealRegistrationFactory(partner=partner, status="rejected", decided_at=timezone.now())
    DealRegistrationFactory()  # another partner's
    now = timezone.now()
    DealFactory(sourcing_partner=partner, status="won", created_at=now - timedelta(days=3), closed_at=now)
    # 16 before: the trend line, the two charts and the pipeline (two) add five, whatever the data.
    with django_assert_max_num_queries(21):
        response = client.get(reverse("portal:home"))
    html = response.content.decode()
    assert 'data-value="4321.00"' in html or 'data-value="4000.00"' in html
    assert '<dd data-status="submitted">1</dd>' in html and '<dd data-status="rejected">1</dd>' in html
    assert '<dd data-fact="deals_won">1</dd>' in html


def test_portal_lists_stay_within_their_query_budget(client, membership, django_assert_max_num_queries):
    for _ in range(15):
        DealRegistrationFactory(partner=membership.partner)
        DealFactory(sourcing_partner=membership.partner)
    for name in ("portal:registrations", "portal:deals", "portal:register"):
        # Session, user, membership, the access checks (roles, partner), the list's count (pages)
        # and the list itself.
        with django_assert_max_num_queries(9):
            assert client.get(reverse(name)).status_code == 200


def test_the_register_form_refuses_implausible_amounts_and_dates(client, membership):
    for field, value, message in (
        ("amount", "1E+5", "is not a number in plain notation with ASCII digits"),
        ("amount", "٣", "is not a number in plain notation with ASCII digits"),
        ("expected_close_date", "9999-12-31", "9999-12-31 is outside the accepted range"),
    ):
        response = client.post(reverse("portal:register"), {**VALID, field: value, "action": "submit"})
        assert response.status_code == 400
        assert message in response.content.decode(), value
    assert not DealRegistration.objects.exists()


def test_portal_lists_are_paginated(client, membership):
    for _ in range(53):
        DealFactory(sourcing_partner=membership.partner)
    first = client.get(reverse("portal:deals"))
    assert len(first.context["deals"]) == 50 and "Page 1 of 2" in first.content.decode()
    assert len(client.get(reverse("portal:deals"), {"page": 2}).context["deals"]) == 3
