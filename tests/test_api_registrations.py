"""The registration workflow through the API: submit, duplicate check, approve, override, reject."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from deals.models import Deal, DealRegistration
from tests.factories import AccountFactory, DealRegistrationFactory, PartnerFactory, PartnerUserFactory
from tests.support.api import *  # noqa: F403
from tests.support.api import API, client_for, error_of

SUBMISSION = {"account_name": "Globex", "domain": "https://www.Globex.example/contact", "amount": "2500.00"}


def _recent_claim(partner, domain: str) -> DealRegistration:
    """A claim submitted an hour ago, so it is inside its protection window now."""
    now = timezone.now()
    return DealRegistrationFactory(
        partner=partner,
        account=AccountFactory(domain=domain),
        submitted_at=now - timedelta(hours=1),
        protection_expires_at=now + timedelta(days=30),
    )


def test_a_partner_user_submits_for_its_own_partner(world_a, admin_a, as_admin_a):
    response = as_admin_a.post(f"{API}/registrations/", SUBMISSION, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    registration = DealRegistration.objects.get(pk=body["id"])
    assert registration.partner == world_a.partner
    assert registration.submitted_by == admin_a
    assert registration.status == "submitted"
    assert registration.amount == Decimal("2500.00")
    assert body["domain"] == "globex.example"
    assert body["partner"] == world_a.partner.pk


def test_a_partner_member_can_submit_too(world_a, as_member_a):
    response = as_member_a.post(f"{API}/registrations/", SUBMISSION, format="json")
    assert response.status_code == 201
    assert response.json()["partner"] == world_a.partner.pk


def test_a_partner_user_can_never_name_a_partner_a_decision_or_a_sourcing_partner(
    world_a, world_b, as_admin_b
):
    body = {
        **SUBMISSION,
        "partner": world_a.partner.pk,
        "status": "approved",
        "decision_reason": "self-approved",
        "sourcing_partner": world_a.partner.pk,
    }
    response = as_admin_b.post(f"{API}/registrations/", body, format="json")
    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"partner", "status", "decision_reason", "sourcing_partner"}
    assert not DealRegistration.objects.filter(account__domain="globex.example").exists()


def test_an_invalid_submission_gets_field_errors_and_writes_nothing(world_a, as_admin_a):
    response = as_admin_a.post(f"{API}/registrations/", {**SUBMISSION, "amount": "-5"}, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert error["fields"]["amount"] == ["must be greater than 0"]
    assert DealRegistration.objects.count() == 1  # only world_a's


def test_a_manager_submits_on_a_partners_behalf_and_must_name_it(world_a, as_manager):
    missing = as_manager.post(f"{API}/registrations/", SUBMISSION, format="json")
    assert missing.status_code == 400
    assert "partner" in error_of(missing)["fields"]
    response = as_manager.post(
        f"{API}/registrations/", {**SUBMISSION, "partner": world_a.partner.pk}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["partner"] == world_a.partner.pk


def test_a_submission_on_a_claimed_domain_is_flagged_and_the_partner_is_not_told_whose(
    world_a, world_b, as_admin_b, as_manager
):
    claim = _recent_claim(world_a.partner, "globex.example")
    response = as_admin_b.post(f"{API}/registrations/", SUBMISSION, format="json")
    assert response.status_code == 201
    assert response.json()["conflict_with"] is None  # hidden from partners
    staff_view = as_manager.get(f"{API}/registrations/{response.json()['id']}/").json()
    assert staff_view["conflict_with"] == claim.pk


def test_the_duplicate_check_warns_a_partner_without_naming_the_other_partner(world_a, world_b, as_admin_b):
    claim = _recent_claim(world_a.partner, "globex.example")
    response = as_admin_b.get(f"{API}/registrations/conflicts/", {"domain": "WWW.globex.example"})
    assert response.status_code == 200
    body = response.json()
    assert body["domain"] == "globex.example"
    assert body["has_conflict"] is True
    assert body["conflicts"] == []
    assert body["protected_until"].startswith(claim.protection_expires_at.strftime("%Y-%m-%d"))


def test_the_duplicate_check_ignores_the_partners_own_claims(world_a, as_admin_a):
    _recent_claim(world_a.partner, "globex.example")
    body = as_admin_a.get(f"{API}/registrations/conflicts/", {"domain": "globex.example"}).json()
    assert body == {
        "domain": "globex.example",
        "has_conflict": False,
        "protected_until": None,
        "conflicts": [],
    }


def test_staff_see_the_conflicting_claims_themselves(world_a, world_b, as_manager):
    claim = _recent_claim(world_a.partner, "globex.example")
    body = as_manager.get(
        f"{API}/registrations/conflicts/", {"domain": "globex.example", "partner": world_b.partner.pk}
    ).json()
    assert [c["id"] for c in body["conflicts"]] == [claim.pk]
    assert body["conflicts"][0]["partner_name"] == "Alpha Partners"


def test_the_duplicate_check_needs_a_domain(world_a, as_admin_a):
    response = as_admin_a.get(f"{API}/registrations/conflicts/")
    assert response.status_code == 400
    assert "domain" in error_of(response)["fields"]


def test_approving_a_registration_opens_the_partner_sourced_deal(world_a, manager, as_manager):
    registration = _recent_claim(world_a.partner, "globex.example")
    response = as_manager.post(
        f"{API}/registrations/{registration.pk}/approve/", {"reason": "qualified"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "approved"
    assert body["decision_reason"] == "qualified"
    deal = Deal.objects.get(pk=body["deal"])
    assert deal.sourcing_partner == world_a.partner
    assert deal.amount == registration.amount
    assert deal.status == "open"
    registration.refresh_from_db()
    assert registration.decided_by == manager


def test_approving_a_conflicting_registration_answers_409_with_the_conflicting_one(
    world_a, world_b, as_manager
):
    earlier = _recent_claim(world_a.partner, "globex.example")
    later = _recent_claim(world_b.partner, "globex.example")
    later.submitted_at = earlier.submitted_at + timedelta(minutes=5)
    later.save()
    response = as_manager.post(f"{API}/registrations/{later.pk}/approve/", {}, format="json")
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict"
    assert error["conflict"]["id"] == earlier.pk
    assert error["conflict"]["partner"] == world_a.partner.pk
    later.refresh_from_db()
    assert later.status == "submitted"
    assert later.deal is None


def test_overriding_approves_a_conflicting_registration_and_keeps_the_reason(world_a, world_b, as_manager):
    earlier = _recent_claim(world_a.partner, "globex.example")
    later = _recent_claim(world_b.partner, "globex.example")
    later.submitted_at = earlier.submitted_at + timedelta(minutes=5)
    later.save()
    missing_reason = as_manager.post(f"{API}/registrations/{later.pk}/override/", {}, format="json")
    assert missing_reason.status_code == 400
    assert "override_reason" in error_of(missing_reason)["fields"]
    response = as_manager.post(
        f"{API}/registrations/{later.pk}/override/", {"override_reason": "the AE confirmed it"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "approved"
    assert body["conflict_override_reason"] == "the AE confirmed it"
    assert body["conflict_with"] == earlier.pk


def test_rejecting_needs_a_reason(world_a, as_manager):
    url = f"{API}/registrations/{world_a.registration.pk}/reject/"
    missing = as_manager.post(url, {}, format="json")
    assert missing.status_code == 400
    assert "reason" in error_of(missing)["fields"]
    response = as_manager.post(url, {"reason": "existing direct opportunity"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert response.json()["decision_reason"] == "existing direct opportunity"


def test_deciding_twice_is_a_400_that_says_why(world_a, as_manager):
    url = f"{API}/registrations/{world_a.registration.pk}/reject/"
    assert as_manager.post(url, {"reason": "no"}, format="json").status_code == 200
    again = as_manager.post(url, {"reason": "no"}, format="json")
    assert again.status_code == 400
    assert "status" in error_of(again)["fields"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_partners_submitting_the_same_customer_at_once_get_exactly_one_clean_claim():
    partners = [PartnerFactory(name=f"Racer {n}") for n in range(20)]
    clients = [
        client_for(PartnerUserFactory(partner=p, user__username=f"racer{n}").user)
        for n, p in enumerate(partners)
    ]
    start = threading.Barrier(len(clients))

    def submit(client):
        try:
            start.wait()
            return client.post(
                f"{API}/registrations/", {**SUBMISSION, "domain": "race.example"}, format="json"
            )
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        responses = list(pool.map(submit, clients))

    assert [r.status_code for r in responses] == [201] * 20
    claims = DealRegistration.objects.filter(account__domain="race.example")
    assert claims.count() == 20
    assert claims.values("account").distinct().count() == 1
    clean = claims.filter(conflict_with__isnull=True)
    assert clean.count() == 1
    assert not claims.exclude(pk=clean.get().pk).filter(conflict_with__isnull=True).exists()


def test_a_submission_with_several_bad_fields_lists_every_one_of_them(as_member_a):
    response = as_member_a.post(
        f"{API}/registrations/", {"account_name": "", "domain": "initech", "amount": "-5"}, format="json"
    )
    assert response.status_code == 400
    fields = error_of(response)["fields"]
    assert set(fields) == {"account_name", "domain", "amount"}
    assert fields["amount"] == ["must be greater than 0"]
    assert fields["domain"] == ["'initech' is not a domain name such as acme.com"]
