"""The database itself refuses data that breaks KPIS.md's data-quality rules."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from deals.models import Account, Deal
from partners.models import JoinSource, Partner

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
T1 = datetime(2026, 3, 20, 12, tzinfo=UTC)


@pytest.fixture
def account() -> Account:
    return Account.objects.create(name="Acme", domain="https://www.Acme.com/x")


def _insert_refused(**fields) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Deal.objects.create(**fields)


def test_account_domain_is_normalised(account):
    assert account.domain == "acme.com"


def test_database_refuses_zero_and_negative_amounts(account):
    _insert_refused(account=account, amount=Decimal("0"), created_at=T0)
    _insert_refused(account=account, amount=Decimal("-5"), created_at=T0)


def test_database_refuses_closed_before_created(account):
    _insert_refused(account=account, amount=Decimal("10"), created_at=T1, closed_at=T0, status="lost")


def test_database_refuses_won_or_lost_without_closed_at(account):
    _insert_refused(account=account, amount=Decimal("10"), created_at=T0, status="won")
    _insert_refused(account=account, amount=Decimal("10"), created_at=T0, status="lost")


def test_database_accepts_a_valid_won_deal(account):
    deal = Deal.objects.create(
        account=account, amount=Decimal("10.50"), created_at=T0, closed_at=T1, status="won"
    )
    assert Deal.objects.get(pk=deal.pk).amount == Decimal("10.50")


def test_partner_status_must_match_joined_at():
    source = JoinSource.objects.create(name="Web", kind="website")
    with pytest.raises(IntegrityError), transaction.atomic():
        Partner.objects.create(
            name="P", type="reseller", join_source=source, applied_at=date(2026, 1, 1), status="active"
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Partner.objects.create(
            name="P",
            type="reseller",
            join_source=source,
            applied_at=date(2026, 2, 1),
            joined_at=date(2026, 1, 1),
            status="active",
        )
