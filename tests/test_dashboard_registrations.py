"""The registration review queue: conflict warnings, and decisions through the domain services."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from deals.models import DealRegistration
from deals.services import registration_submit
from partners.roles import StaffRole
from tests.factories import PartnerFactory, StaffUserFactory

pytestmark = pytest.mark.django_db
URL = "dashboards:registrations"


@pytest.fixture
def manager(client):
    user = StaffUserFactory()
    client.force_login(user)
    return user


@pytest.fixture
def registration_in_conflict():
    """Acme registered by Alpha two days ago, then by Bravo yesterday (Bravo's is in conflict)."""
    now = timezone.now()
    alpha, bravo = PartnerFactory(name="Alpha"), PartnerFactory(name="Bravo")
    first = registration_submit(
        partner=alpha,
        account_name="Acme",
        domain="acme.com",
        amount=Decimal("900"),
        submitted_at=now - timedelta(days=2),
    )
    second = registration_submit(
        partner=bravo,
        account_name="Acme",
        domain="acme.com",
        amount=Decimal("700"),
        submitted_at=now - timedelta(days=1),
    )
    return first, second


def decide(client, registration, **fields):
    prefix = f"r{registration.pk}"
    data = {"registration": registration.pk, **{f"{prefix}-{k}": v for k, v in fields.items()}}
    return client.post(reverse(URL), data)


def test_queue_warns_which_partner_claimed_the_account_and_when(client, manager, registration_in_conflict):
    first, second = registration_in_conflict
    html = client.get(reverse(URL)).content.decode()
    block = html[html.index(f'data-registration="{second.pk}"') :]
    assert "Conflict:" in block
    assert "Alpha</a>" in block[: block.index("</article>")]
    assert first.submitted_at.strftime("%-d %b %Y") in block[: block.index("</article>")]


def test_approving_a_clean_registration_opens_a_sourced_deal(client, manager, registration_in_conflict):
    first, _ = registration_in_conflict
    response = decide(client, first, decision="approve", reason="Known opportunity")
    assert response.status_code == 302
    first.refresh_from_db()
    assert first.status == DealRegistration.Status.APPROVED
    assert first.deal.sourcing_partner == first.partner
    assert first.decided_by == manager


def test_approving_a_conflicting_registration_without_override_shows_the_error_on_the_form(
    client, manager, registration_in_conflict
):
    first, second = registration_in_conflict
    decide(client, first, decision="approve")
    response = decide(client, second, decision="approve")
    assert response.status_code == 400
    html = response.content.decode()
    field_id = f"id_r{second.pk}-override_reason"
    assert f'aria-describedby="{field_id}_help {field_id}_error"' in html
    assert "Give an override reason" in html
    second.refresh_from_db()
    assert second.status == DealRegistration.Status.SUBMITTED


def test_override_with_a_reason_approves_the_conflicting_registration(
    client, manager, registration_in_conflict
):
    first, second = registration_in_conflict
    decide(client, first, decision="approve")
    decide(client, second, decision="override", override_reason="Customer asked for Bravo")
    second.refresh_from_db()
    assert second.status == DealRegistration.Status.APPROVED
    assert second.conflict_override_reason == "Customer asked for Bravo"


def test_rejecting_needs_a_reason_and_keeps_what_was_typed(client, manager, registration_in_conflict):
    _, second = registration_in_conflict
    response = decide(client, second, decision="reject", reason="  ")
    assert response.status_code == 400
    assert "Say why the registration is rejected." in response.content.decode()
    response = decide(client, second, decision="reject", reason="Duplicate of Alpha's claim")
    assert response.status_code == 302
    second.refresh_from_db()
    assert (second.status, second.decision_reason) == ("rejected", "Duplicate of Alpha's claim")


def test_sales_ops_see_the_queue_but_cannot_decide(client, registration_in_conflict):
    first, _ = registration_in_conflict
    client.force_login(StaffUserFactory(role=StaffRole.SALES_OPS))
    html = client.get(reverse(URL)).content.decode()
    assert "Acme" in html and "Record decision" not in html
    assert decide(client, first, decision="approve").status_code == 403


def test_queue_query_count_does_not_grow_with_registrations(client, manager, django_assert_max_num_queries):
    now = timezone.now()
    for i in range(12):
        registration_submit(
            partner=PartnerFactory(),
            account_name=f"C{i}",
            domain="shared.example",
            amount=Decimal("10"),
            submitted_at=now - timedelta(hours=20 - i),
        )
    with django_assert_max_num_queries(10):
        response = client.get(reverse(URL))
    assert len(response.context["rows"]) == 12


def test_deciding_a_registration_someone_already_decided_explains_why_nothing_happened(
    client, manager, registration_in_conflict
):
    first, _ = registration_in_conflict
    decide(client, first, decision="reject", reason="Not a real opportunity")
    response = decide(client, first, decision="approve")
    assert response.status_code == 400
    html = response.content.decode()
    assert (
        f"Registration #{first.pk}: only a submitted registration can be approved; this one is rejected"
        in html
    )
    first.refresh_from_db()
    assert first.status == DealRegistration.Status.REJECTED
