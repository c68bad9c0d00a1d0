"""Deal registration: submission with channel-conflict flagging, approval, rejection and expiry."""

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from deals.models import Account, Deal, DealRegistration
from deals.selectors import pending_registrations, registration_conflicts
from deals.services import (
    deal_update,
    registration_approve,
    registration_reject,
    registration_submit,
    registrations_expire,
)
from deals.tasks import expire_registrations
from partners.services import partner_set_status
from program.models import ProgramSettings
from tests.factories import (
    AccountFactory,
    DealRegistrationFactory,
    PartnerFactory,
    PartnerUserFactory,
    StaffUserFactory,
)

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def _errors(exc_info) -> dict[str, list[str]]:
    return exc_info.value.message_dict


def _submit(partner, *, domain="acme.com", amount=Decimal("5000.00"), **kwargs) -> DealRegistration:
    return registration_submit(partner=partner, account_name="Acme", domain=domain, amount=amount, **kwargs)


@pytest.fixture
def manager():
    return StaffUserFactory(username="mia")


@pytest.fixture
def first_claim() -> DealRegistration:
    """A clean claim on acme.com by 'First Partner', submitted ten days ago."""
    return _submit(PartnerFactory(name="First Partner"), submitted_at=timezone.now() - 10 * DAY)


@pytest.fixture
def registration_in_conflict(first_claim) -> DealRegistration:
    """A later claim on the same customer by 'Second Partner', flagged against first_claim."""
    return _submit(
        PartnerFactory(name="Second Partner"),
        domain="https://www.acme.com",
        submitted_at=timezone.now() - DAY,
    )


# --- Submission -------------------------------------------------------------------------------


def test_a_clean_submission_claims_the_customer_for_the_protection_window():
    partner, submitter = PartnerFactory(), None
    submitted_at = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    registration = _submit(
        partner,
        domain="Sales@ACME.com",
        submitted_at=submitted_at,
        expected_close_date=date(2026, 6, 30),
        notes="  Needs 40 seats ",
        submitted_by=submitter,
    )
    stored = DealRegistration.objects.select_related("account").get(pk=registration.pk)
    assert (stored.status, stored.conflict_with, stored.amount) == ("submitted", None, Decimal("5000.00"))
    assert (stored.account.name, stored.account.domain) == ("Acme", "acme.com")
    assert stored.protection_expires_at == datetime(2026, 8, 2, 10, 0, tzinfo=UTC)  # 90 days later
    assert stored.notes == "Needs 40 seats"


def test_the_protection_window_follows_the_program_setting():
    program = ProgramSettings.load()
    program.registration_protection_days = 30
    program.save()
    submitted_at = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    registration = _submit(PartnerFactory(), submitted_at=submitted_at)
    assert registration.protection_expires_at == datetime(2026, 6, 3, 10, 0, tzinfo=UTC)


def test_another_partners_claim_on_the_same_domain_is_flagged(first_claim, registration_in_conflict):
    assert registration_in_conflict.conflict_with == first_claim
    assert registration_in_conflict.account == first_claim.account
    assert Account.objects.count() == 1


def test_the_conflict_points_at_the_oldest_protected_claim(first_claim, registration_in_conflict):
    third = _submit(PartnerFactory())
    assert third.conflict_with == first_claim


def test_the_same_partner_registering_a_customer_still_awaiting_review_is_refused_clearly(first_claim):
    """Not a silent duplicate, nor a conflict with itself: the partner is told which one awaits review."""
    with pytest.raises(ValidationError) as refused:
        _submit(first_claim.partner)
    [message] = refused.value.message_dict["domain"]
    expected = f"you already registered this customer and it awaits review: registration #{first_claim.pk}"
    assert message.startswith(f"{expected} (submitted ")
    assert DealRegistration.objects.filter(partner=first_claim.partner).count() == 1


@pytest.mark.parametrize("status", ["approved", "rejected", "expired"])
def test_the_same_partner_may_register_again_once_its_first_is_decided_or_expired(first_claim, status):
    """After an approval a second opportunity at the same customer is normal; it never conflicts."""
    DealRegistration.objects.filter(pk=first_claim.pk).update(status=status, decided_at=timezone.now())
    again = _submit(first_claim.partner)
    assert again.conflict_with is None


def test_a_claim_outside_its_protection_window_does_not_conflict():
    old = _submit(PartnerFactory(), submitted_at=timezone.now() - 91 * DAY)
    assert old.protection_expires_at < timezone.now()
    assert _submit(PartnerFactory()).conflict_with is None


@pytest.mark.parametrize("status", ["rejected", "expired"])
def test_a_rejected_or_expired_claim_does_not_conflict(status):
    DealRegistrationFactory(
        account=AccountFactory(domain="acme.com"),
        status=status,
        submitted_at=timezone.now() - DAY,
        decided_at=timezone.now() if status == "rejected" else None,
    )
    assert _submit(PartnerFactory()).conflict_with is None


def test_an_approved_claim_inside_its_window_conflicts(first_claim, manager):
    registration_approve(registration=first_claim, decided_by=manager)
    assert _submit(PartnerFactory()).conflict_with == first_claim


def test_an_imported_claim_without_a_protection_date_is_protected_from_its_submission():
    imported = DealRegistrationFactory(
        account=AccountFactory(domain="acme.com"),
        submitted_at=timezone.now() - 5 * DAY,
        protection_expires_at=None,
    )
    assert _submit(PartnerFactory()).conflict_with == imported


def test_a_claim_on_another_customer_does_not_conflict(first_claim):
    assert _submit(PartnerFactory(), domain="globex.com").conflict_with is None


def test_a_registration_by_an_unknown_or_unapproved_partner_is_refused():
    with pytest.raises(ValidationError) as exc_info:
        _submit(None)
    assert _errors(exc_info) == {"partner": ["unknown partner"]}
    with pytest.raises(ValidationError) as exc_info:
        _submit(PartnerFactory(applied=True, name="Applicant"))
    assert _errors(exc_info) == {"partner": ["Applicant is not an approved partner (status: applied)"]}
    with pytest.raises(ValidationError) as exc_info:
        _submit(PartnerFactory(name="Gone", status="churned"))
    assert _errors(exc_info) == {"partner": ["Gone has left the program (status: churned)"]}
    assert DealRegistration.objects.count() == 0
    assert Account.objects.count() == 0


def test_a_registration_with_bad_fields_lists_every_problem_and_writes_nothing():
    with pytest.raises(ValidationError) as exc_info:
        registration_submit(
            partner=PartnerFactory(),
            account_name="",
            domain="not a domain",
            amount=Decimal("0"),
            submitted_at=datetime(2026, 5, 4, tzinfo=UTC),
            expected_close_date=date(2026, 5, 1),
        )
    assert _errors(exc_info) == {
        "account_name": ["is required"],
        "amount": ["must be greater than 0"],
        "domain": ["'not a domain' is not a domain name such as acme.com"],
        "expected_close_date": ["is before the submission date"],
    }
    with pytest.raises(ValidationError) as exc_info:
        _submit(PartnerFactory(), domain="")
    assert _errors(exc_info) == {"domain": ["is required: the customer's web or email domain, e.g. acme.com"]}
    assert DealRegistration.objects.count() == 0


def test_a_portal_user_cannot_register_for_another_partner():
    outsider = PartnerUserFactory(partner=PartnerFactory(name="Other Co"))
    with pytest.raises(ValidationError) as exc_info:
        _submit(PartnerFactory(name="Target Co"), submitted_by=outsider.user)
    assert _errors(exc_info) == {
        "submitted_by": [f"{outsider.user} acts for another partner and cannot register deals for Target Co"]
    }
    own = PartnerUserFactory()
    assert _submit(own.partner, submitted_by=own.user).submitted_by == own.user


def test_the_expected_close_date_is_compared_with_the_submission_day_in_the_program_time_zone():
    program = ProgramSettings.load()
    program.time_zone = "Pacific/Kiritimati"  # UTC+14: 12:00 UTC on May 4 is already May 5 there
    program.save()
    with pytest.raises(ValidationError) as exc_info:
        _submit(
            PartnerFactory(),
            submitted_at=datetime(2026, 5, 4, 12, 0, tzinfo=UTC),
            expected_close_date=date(2026, 5, 4),
        )
    assert _errors(exc_info) == {"expected_close_date": ["is before the submission date"]}


# --- Approval -----------------------------------------------------------------------------------


def test_approval_opens_a_deal_sourced_by_the_partner(first_claim, manager):
    approved = registration_approve(registration=first_claim, decided_by=manager, reason="Good fit")
    stored = DealRegistration.objects.select_related("deal").get(pk=first_claim.pk)
    deal = stored.deal
    assert (stored.status, stored.decided_by, stored.decision_reason) == ("approved", manager, "Good fit")
    assert stored.decided_at is not None and approved.deal == deal
    assert (deal.status, deal.amount, deal.sourcing_partner, deal.account) == (
        "open",
        Decimal("5000.00"),
        first_claim.partner,
        first_claim.account,
    )
    assert deal.created_at == stored.decided_at
    assert deal.closed_at is None
    assert Deal.objects.count() == 1


def test_the_first_claim_is_approved_without_override_even_with_later_claims(
    first_claim, registration_in_conflict
):
    approved = registration_approve(registration=first_claim, decided_by=None)
    assert (approved.status, approved.conflict_override_reason) == ("approved", "")


def test_approval_in_conflict_needs_an_override_reason(registration_in_conflict, manager):
    with pytest.raises(ValidationError) as exc_info:
        registration_approve(registration=registration_in_conflict, decided_by=manager)
    message = _errors(exc_info)["override_reason"][0]
    assert message.startswith(
        f"channel conflict with registration #{registration_in_conflict.conflict_with_id} by First Partner"
    )
    assert message.endswith("Give an override reason to approve it anyway.")
    assert DealRegistration.objects.get(pk=registration_in_conflict.pk).status == "submitted"
    assert Deal.objects.count() == 0


def test_an_override_reason_approves_the_conflicting_claim_and_is_kept(registration_in_conflict, manager):
    approved = registration_approve(
        registration=registration_in_conflict,
        decided_by=manager,
        override_reason="Customer asked for Second Partner",
    )
    stored = DealRegistration.objects.get(pk=approved.pk)
    assert (stored.status, stored.conflict_override_reason) == (
        "approved",
        "Customer asked for Second Partner",
    )
    assert stored.deal.sourcing_partner.name == "Second Partner"


def test_an_approved_later_claim_blocks_the_earlier_one(first_claim, registration_in_conflict, manager):
    registration_approve(
        registration=registration_in_conflict, decided_by=manager, override_reason="Customer's choice"
    )
    with pytest.raises(ValidationError) as exc_info:
        registration_approve(registration=first_claim, decided_by=manager)
    assert "by Second Partner (approved" in _errors(exc_info)["override_reason"][0]


def test_rejecting_the_first_claim_clears_the_way_for_the_second(
    first_claim, registration_in_conflict, manager
):
    registration_reject(registration=first_claim, decided_by=manager, reason="Duplicate of CRM opportunity")
    approved = registration_approve(registration=registration_in_conflict, decided_by=manager)
    assert (approved.status, approved.conflict_override_reason) == ("approved", "")


def test_only_submitted_registrations_can_be_decided(first_claim, manager):
    registration_approve(registration=first_claim, decided_by=manager)
    with pytest.raises(ValidationError) as exc_info:
        registration_approve(registration=first_claim, decided_by=manager)
    assert _errors(exc_info) == {
        "status": ["only a submitted registration can be approved; this one is approved"]
    }
    with pytest.raises(ValidationError) as exc_info:
        registration_reject(registration=first_claim, decided_by=manager, reason="Too late")
    assert _errors(exc_info) == {
        "status": ["only a submitted registration can be rejected; this one is approved"]
    }
    assert Deal.objects.count() == 1


def test_a_registration_past_its_protection_window_cannot_be_approved(manager):
    lapsed = _submit(PartnerFactory(), submitted_at=datetime(2026, 1, 5, tzinfo=UTC))
    with pytest.raises(ValidationError) as exc_info:
        registration_approve(registration=lapsed, decided_by=manager)
    assert _errors(exc_info) == {
        "status": ["its protection window ended on 2026-04-05: the registration has expired"]
    }


def test_a_registration_of_a_partner_that_churned_since_cannot_be_approved(first_claim, manager):
    partner_set_status(partner=first_claim.partner, status="churned")
    with pytest.raises(ValidationError) as exc_info:
        registration_approve(registration=first_claim, decided_by=manager)
    assert _errors(exc_info) == {"partner": ["First Partner has left the program (status: churned)"]}


# --- Rejection ----------------------------------------------------------------------------------


def test_rejection_needs_a_reason(first_claim, manager):
    with pytest.raises(ValidationError) as exc_info:
        registration_reject(registration=first_claim, decided_by=manager, reason="  ")
    assert _errors(exc_info) == {"reason": ["is required: tell the partner why it was rejected"]}
    assert DealRegistration.objects.get(pk=first_claim.pk).status == "submitted"


def test_rejection_records_who_decided_and_why(first_claim, manager):
    registration_reject(registration=first_claim, decided_by=manager, reason="Existing direct opportunity")
    stored = DealRegistration.objects.get(pk=first_claim.pk)
    assert (stored.status, stored.decided_by, stored.decision_reason, stored.deal) == (
        "rejected",
        manager,
        "Existing direct opportunity",
        None,
    )
    assert stored.decided_at >= stored.submitted_at


# --- Expiry -------------------------------------------------------------------------------------


def test_submitted_registrations_expire_when_their_window_ends(manager):
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    lapsed = DealRegistrationFactory(submitted_at=now - 90 * DAY)  # window ends exactly now
    still_protected = DealRegistrationFactory(submitted_at=now - 89 * DAY)
    imported_old = DealRegistrationFactory(submitted_at=now - 100 * DAY, protection_expires_at=None)
    approved_old = DealRegistrationFactory(
        submitted_at=now - 120 * DAY, status="approved", decided_at=now - 119 * DAY
    )
    rejected_old = DealRegistrationFactory(
        submitted_at=now - 120 * DAY, status="rejected", decided_at=now - 119 * DAY
    )
    assert registrations_expire(now=now) == 2
    statuses = dict(DealRegistration.objects.values_list("pk", "status"))
    assert statuses == {
        lapsed.pk: "expired",
        still_protected.pk: "submitted",
        imported_old.pk: "expired",
        approved_old.pk: "approved",
        rejected_old.pk: "rejected",
    }
    assert registrations_expire(now=now) == 0


def test_the_celery_task_expires_registrations_and_is_safe_to_repeat():
    lapsed = DealRegistrationFactory(submitted_at=timezone.now() - 200 * DAY)
    fresh = DealRegistrationFactory(submitted_at=timezone.now() - DAY)
    assert expire_registrations.apply().get() == 1
    assert expire_registrations.apply().get() == 0
    assert DealRegistration.objects.get(pk=lapsed.pk).status == "expired"
    assert DealRegistration.objects.get(pk=fresh.pk).status == "submitted"


# --- Selectors ----------------------------------------------------------------------------------


def test_registration_conflicts_lists_other_partners_protected_claims(first_claim, registration_in_conflict):
    third_partner = PartnerFactory()
    assert list(registration_conflicts(partner=third_partner, domain="www.acme.com")) == [
        first_claim,
        registration_in_conflict,
    ]
    assert list(registration_conflicts(partner=first_claim.partner, domain="acme.com")) == [
        registration_in_conflict
    ]
    assert list(
        registration_conflicts(partner=third_partner, domain="acme.com", at=timezone.now() - 5 * DAY)
    ) == [first_claim]
    assert list(registration_conflicts(partner=third_partner, domain="")) == []


def test_the_review_queue_holds_submitted_registrations_oldest_first(
    first_claim, registration_in_conflict, manager
):
    decided = _submit(PartnerFactory(), domain="globex.com", submitted_at=timezone.now() - 20 * DAY)
    registration_reject(registration=decided, decided_by=manager, reason="No budget")
    queue = list(pending_registrations())
    assert queue == [first_claim, registration_in_conflict]
    assert queue[1].conflict_with.partner.name == "First Partner"


# --- Concurrency --------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_simultaneous_claims_on_one_customer_give_one_clean_claim_and_nineteen_conflicts():
    partners = [PartnerFactory(name=f"Racer {n:02d}") for n in range(20)]
    ProgramSettings.load()
    start = threading.Barrier(len(partners))
    failures: list[BaseException] = []

    def claim(partner) -> None:
        try:
            start.wait()
            _submit(partner, domain="https://www.race.example")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(partner,)) for partner in partners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    registrations = DealRegistration.objects.filter(account__domain="race.example")
    assert registrations.count() == 20
    assert Account.objects.filter(domain="race.example").count() == 1
    clean = registrations.filter(conflict_with__isnull=True)
    assert clean.count() == 1
    assert registrations.filter(conflict_with=clean.get()).count() == 19
    assert registrations.values("partner").distinct().count() == 20


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_approving_a_claim_while_others_submit_on_the_same_customer_neither_deadlocks_nor_loses_a_claim():
    first = _submit(PartnerFactory(name="First"), domain="race.example", submitted_at=timezone.now() - DAY)
    manager = StaffUserFactory()
    later_partners = [PartnerFactory(name=f"Later {n:02d}") for n in range(10)]
    start = threading.Barrier(len(later_partners) + 1)
    failures: list[BaseException] = []

    def run(job) -> None:
        try:
            start.wait()
            job()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
        finally:
            connection.close()

    jobs = [lambda p=p: _submit(p, domain="www.race.example") for p in later_partners]
    jobs.append(lambda: registration_approve(registration=first, decided_by=manager))
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    first.refresh_from_db()
    assert first.status == "approved" and first.deal is not None
    later = DealRegistration.objects.exclude(pk=first.pk)
    assert later.count() == 10
    assert later.filter(conflict_with=first).count() == 10


def test_a_deal_opened_from_a_registration_keeps_the_registering_partner_as_its_source(first_claim, manager):
    deal = registration_approve(registration=first_claim, decided_by=manager).deal
    with pytest.raises(ValidationError) as exc_info:
        deal_update(deal=deal, sourcing_partner=PartnerFactory())
    assert _errors(exc_info) == {
        "sourcing_partner": [
            f"this deal came from registration #{first_claim.pk} by First Partner, "
            "which is its sourcing partner"
        ]
    }
    assert deal_update(deal=deal, amount=Decimal("6000.00")).sourcing_partner == first_claim.partner
