"""Every service that changes a partner's, a registration's or a deal's state records its domain
event in the same transaction, with who acted and through what."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from deals import services as deals
from deals.models import DealRegistration
from events.models import Change, Event
from partners import services as partners
from prm.acting import Actor, Channel, acting
from tests.factories import AccountFactory, DealFactory, JoinSourceFactory, PartnerFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


def types() -> list[str]:
    return list(Event.objects.order_by("id").values_list("type", flat=True))


def test_partner_applied_approved_and_rejected_carry_actor_channel_and_before():
    manager = StaffUserFactory(username="pm-events")
    with acting(channel=Channel.API, actor=Actor(label="pm-events", user=manager)):
        applied = partners.partner_apply(
            name="Contoso", type="reseller", join_source=JoinSourceFactory(), applied_at=date(2026, 3, 1)
        )
        partners.partner_approve(partner=applied, joined_at=date(2026, 3, 5))
        other = partners.partner_apply(
            name="Fabrikam", type="reseller", join_source=JoinSourceFactory(), applied_at=date(2026, 3, 1)
        )
        partners.partner_reject(partner=other)
    assert types() == ["partner.applied", "partner.approved", "partner.applied", "partner.rejected"]
    approved = Event.objects.get(type="partner.approved")
    assert (approved.actor, approved.actor_label, approved.channel) == (manager, "pm-events", "api")
    assert approved.partner_id == applied.pk and approved.object_id == str(applied.pk)
    assert approved.before == {"status": "applied", "joined_at": None}
    assert approved.after["status"] == "active" and approved.after["joined_at"] == "2026-03-05"
    assert Event.objects.get(type="partner.rejected").after["status"] == "rejected"


def test_a_deal_won_or_lost_records_one_event_when_its_status_changes():
    partner = PartnerFactory()
    won = DealFactory(sourcing_partner=partner)
    lost = DealFactory()
    now = timezone.now()
    deals.deal_close(deal=won, status="won", closed_at=now)
    deals.deal_update(deal=won, amount=Decimal("999.00"))  # still won: no second event
    deals.deal_close(deal=lost, status="lost", closed_at=now)
    deals.deal_create(
        account=AccountFactory(), amount=Decimal("5.00"), created_at=now, status="won", closed_at=now
    )
    assert types() == ["deal.won", "deal.lost", "deal.won"]
    first = Event.objects.filter(type="deal.won").order_by("id").first()
    assert first.partner_id == partner.pk and first.before == {"status": "open"}
    assert first.after["amount"] == "1000.00"


def test_an_expiry_records_the_event_and_reaches_the_change_feed():
    registration = deals.registration_submit(
        partner=PartnerFactory(), account_name="Acme", domain="acme.example", amount=Decimal("10.00")
    )
    later = registration.protection_expires_at + timedelta(seconds=1)
    Change.objects.all().delete()
    assert deals.registrations_expire(now=later) == 1
    event = Event.objects.get(type="registration.expired")
    assert event.object_id == str(registration.pk) and event.after["status"] == "expired"
    assert event.channel == "system" and event.actor_label == "system"
    assert list(Change.objects.values_list("resource", "object_id", "action")) == [
        ("registrations", registration.pk, "updated")
    ]
    assert DealRegistration.objects.get().status == "expired"


def test_a_refused_change_records_nothing():
    partner = PartnerFactory(status="churned")
    with pytest.raises(ValidationError):
        deals.registration_submit(partner=partner, account_name="Acme", domain="acme.example", amount="10")
    assert not Event.objects.exists()
