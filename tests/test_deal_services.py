"""Accounts, deals and touches: every KPIS.md data-quality rule is refused with a clear message."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from deals.models import Account, Deal, Touch
from deals.services import account_get_or_create, deal_close, deal_create, deal_update, touch_add
from partners.models import Partner
from tests.factories import AccountFactory, DealFactory, PartnerFactory, TouchFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 20, 17, 30, tzinfo=UTC)


def _errors(exc_info) -> dict[str, list[str]]:
    return exc_info.value.message_dict


# --- Accounts ---------------------------------------------------------------------------------


def test_accounts_are_matched_on_the_normalised_domain():
    first = account_get_or_create(name="Acme", domain="https://www.ACME.com/pricing")
    again = account_get_or_create(name="Acme Corporation", domain="sales@acme.com")
    assert first.pk == again.pk
    assert (again.name, again.domain) == ("Acme", "acme.com")
    assert Account.objects.count() == 1


def test_an_account_key_wins_over_the_domain():
    keyed = AccountFactory(key="A-1", domain="one.example")
    AccountFactory(domain="two.example")
    assert account_get_or_create(name="x", domain="two.example", key="A-1") == keyed


def test_accounts_without_a_domain_are_never_merged():
    first = account_get_or_create(name="Local Bakery", domain="")
    second = account_get_or_create(name="Local Bakery", domain="")
    assert first.pk != second.pk


def test_a_new_account_needs_a_name():
    with pytest.raises(ValidationError) as exc_info:
        account_get_or_create(name=" ", domain="new.example")
    assert _errors(exc_info)["name"] == ["is required for a new customer account"]


# --- Deals ------------------------------------------------------------------------------------


def test_a_valid_won_deal_is_stored_with_its_sourcing_partner():
    partner = PartnerFactory()
    deal = deal_create(
        account=AccountFactory(),
        amount=Decimal("1250.00"),
        created_at=T0,
        closed_at=T1,
        status="won",
        sourcing_partner=partner,
        key="D-1",
    )
    stored = Deal.objects.get(pk=deal.pk)
    assert (stored.amount, stored.status, stored.sourcing_partner, stored.key) == (
        Decimal("1250.00"),
        "won",
        partner,
        "D-1",
    )


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-0.01"), "-5"])
def test_a_deal_amount_must_be_positive(amount):
    with pytest.raises(ValidationError) as exc_info:
        deal_create(account=AccountFactory(), amount=amount, created_at=T0)
    assert _errors(exc_info) == {"amount": ["must be greater than 0"]}
    assert Deal.objects.count() == 0


def test_a_deal_amount_must_be_a_number_with_at_most_two_decimals():
    with pytest.raises(ValidationError) as exc_info:
        deal_create(account=AccountFactory(), amount="lots", created_at=T0)
    assert _errors(exc_info) == {
        "amount": ["'lots' is not a number in plain notation with ASCII digits (e.g. 1250.00)"]
    }
    with pytest.raises(ValidationError) as exc_info:
        deal_create(account=AccountFactory(), amount=Decimal("10.005"), created_at=T0)
    assert _errors(exc_info)["amount"] == ["has more than 2 decimal places"]


def test_a_deal_cannot_close_before_it_was_created():
    with pytest.raises(ValidationError) as exc_info:
        deal_create(account=AccountFactory(), amount=10, created_at=T1, closed_at=T0, status="lost")
    assert _errors(exc_info) == {"closed_at": ["closed_at is before created_at"]}


@pytest.mark.parametrize("status", ["won", "lost"])
def test_a_won_or_lost_deal_needs_a_closed_at(status):
    with pytest.raises(ValidationError) as exc_info:
        deal_create(account=AccountFactory(), amount=10, created_at=T0, status=status)
    assert _errors(exc_info) == {"closed_at": [f"a {status} deal needs closed_at"]}


def test_an_open_deal_cannot_carry_a_closed_at():
    with pytest.raises(ValidationError) as exc_info:
        deal_create(account=AccountFactory(), amount=10, created_at=T0, closed_at=T1)
    assert _errors(exc_info) == {
        "closed_at": ["an open deal has no closed_at; set status to won or lost to close it"]
    }


def test_a_deal_needs_an_aware_created_at_and_a_known_status():
    with pytest.raises(ValidationError) as exc_info:
        deal_create(account=AccountFactory(), amount=10, created_at=datetime(2026, 3, 1), status="pending")
    errors = _errors(exc_info)
    assert errors["created_at"] == ["needs a time zone (an offset such as +00:00)"]
    assert errors["status"] == ["must be one of open, won, lost"]


def test_a_deal_sourced_by_an_unknown_or_unapproved_partner_is_refused():
    with pytest.raises(ValidationError) as exc_info:
        deal_create(
            account=AccountFactory(), amount=10, created_at=T0, sourcing_partner=Partner(name="Ghost")
        )
    assert _errors(exc_info) == {"sourcing_partner": ["unknown partner"]}
    applicant = PartnerFactory(applied=True, name="Hopeful")
    with pytest.raises(ValidationError) as exc_info:
        deal_create(account=AccountFactory(), amount=10, created_at=T0, sourcing_partner=applicant)
    assert _errors(exc_info) == {"sourcing_partner": ["Hopeful is not an approved partner (status: applied)"]}


def test_a_deal_sourced_before_the_partner_joined_is_legal():
    # Suspicious, not invalid: the reconciliation report lists it.
    partner = PartnerFactory(joined_at=datetime(2026, 6, 1).date())
    deal = deal_create(account=AccountFactory(), amount=10, created_at=T0, sourcing_partner=partner)
    assert deal.sourcing_partner == partner


def test_deal_keys_are_unique():
    DealFactory(key="D-9")
    with pytest.raises(ValidationError) as exc_info:
        deal_create(account=AccountFactory(), amount=10, created_at=T0, key="D-9")
    assert _errors(exc_info) == {"key": ["Deal with this Key already exists."]}


def test_closing_a_deal_records_status_and_close_time():
    deal = DealFactory(created_at=T0)
    closed = deal_close(deal=deal, status="won", closed_at=T1)
    stored = Deal.objects.get(pk=deal.pk)
    assert (closed.status, stored.status, stored.closed_at) == ("won", "won", T1)


def test_closing_refuses_open_as_a_status_and_a_closed_deal():
    deal = DealFactory(created_at=T0)
    with pytest.raises(ValidationError) as exc_info:
        deal_close(deal=deal, status="open", closed_at=T1)
    assert _errors(exc_info) == {"status": ["must be won or lost"]}
    deal_close(deal=deal, status="lost", closed_at=T1)
    with pytest.raises(ValidationError) as exc_info:
        deal_close(deal=deal, status="won", closed_at=T1)
    assert _errors(exc_info) == {"status": ["the deal is already lost; correct it with deal_update"]}


def test_closing_before_creation_is_refused_and_nothing_changes():
    deal = DealFactory(created_at=T1)
    with pytest.raises(ValidationError) as exc_info:
        deal_close(deal=deal, status="won", closed_at=T0)
    assert _errors(exc_info) == {"closed_at": ["closed_at is before created_at"]}
    assert Deal.objects.get(pk=deal.pk).status == "open"


def test_an_update_checks_the_whole_resulting_deal():
    deal = DealFactory(created_at=T0, status="won", closed_at=T1, amount=Decimal("10.00"))
    updated = deal_update(deal=deal, amount=Decimal("99.90"), name="Renamed")
    assert (updated.amount, updated.name) == (Decimal("99.90"), "Renamed")
    with pytest.raises(ValidationError) as exc_info:
        deal_update(deal=deal, closed_at=None)
    assert _errors(exc_info) == {"closed_at": ["a won deal needs closed_at"]}
    with pytest.raises(ValidationError) as exc_info:
        deal_update(deal=deal, created_at=T1 + timedelta(days=1))
    assert _errors(exc_info) == {"closed_at": ["closed_at is before created_at"]}
    assert Deal.objects.get(pk=deal.pk).created_at == T0


def test_an_update_refuses_unknown_fields():
    with pytest.raises(ValidationError) as exc_info:
        deal_update(deal=DealFactory(), updated_at=T0, colour="red")
    assert _errors(exc_info) == {
        "colour": ["cannot be changed through deal_update"],
        "updated_at": ["cannot be changed through deal_update"],
    }


# --- Touches ----------------------------------------------------------------------------------


def test_a_touch_is_recorded_for_a_joined_partner():
    deal, partner = DealFactory(), PartnerFactory()
    touch = touch_add(deal=deal, partner=partner, kind="co_sell", touched_at=T0)
    assert list(deal.touches.values_list("partner", "kind", "touched_at")) == [(partner.pk, "co_sell", T0)]
    assert touch.pk is not None


def test_a_touch_by_an_unknown_partner_is_refused():
    with pytest.raises(ValidationError) as exc_info:
        touch_add(deal=DealFactory(), partner=None, kind="co_sell", touched_at=T0)
    assert _errors(exc_info) == {"partner": ["unknown partner"]}
    rejected = PartnerFactory(name="Turned Down", status="rejected", joined_at=None)
    with pytest.raises(ValidationError) as exc_info:
        touch_add(deal=DealFactory(), partner=rejected, kind="co_sell", touched_at=T0)
    assert _errors(exc_info) == {"partner": ["Turned Down is not an approved partner (status: rejected)"]}
    assert Touch.objects.count() == 0


def test_a_touch_needs_a_known_kind_and_a_time():
    with pytest.raises(ValidationError) as exc_info:
        touch_add(deal=DealFactory(), partner=PartnerFactory(), kind="lunch", touched_at=None)
    assert _errors(exc_info) == {
        "kind": ["must be one of introduction, co_sell, technical, marketplace, referral, other"],
        "touched_at": ["is required"],
    }


def test_the_same_touch_twice_is_refused_with_a_message():
    existing = TouchFactory(touched_at=T0, kind="technical")
    with pytest.raises(ValidationError) as exc_info:
        touch_add(deal=existing.deal, partner=existing.partner, kind="technical", touched_at=T0)
    assert _errors(exc_info)["touched_at"][0].startswith(f"{existing.partner} already has a technical touch")
    assert Touch.objects.count() == 1


def test_a_touch_after_close_is_legal():
    deal = DealFactory(created_at=T0, status="won", closed_at=T1)
    touch = touch_add(deal=deal, partner=PartnerFactory(), kind="other", touched_at=T1 + timedelta(days=3))
    assert touch.touched_at > deal.closed_at
