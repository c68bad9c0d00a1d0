"""kpis.costs.book_program_cost: the one way economics/ and mdf/ turn money paid into costs."""

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from kpis.costs import book_program_cost
from kpis.models import CostEntry, CostEntryLink
from tests.factories import DealFactory, DealRegistrationFactory, PartnerFactory

pytestmark = pytest.mark.django_db


def _book(partner, reference="payout:7", amount="120.50", **extra):
    return book_program_cost(
        source=CostEntry.Source.MDF_REIMBURSEMENT,
        reference=reference,
        date=date(2026, 3, 31),
        amount=Decimal(amount),
        category=CostEntry.Category.MDF,
        partner=partner,
        **extra,
    )


def test_booking_creates_one_cost_with_its_links_and_is_idempotent():
    partner = PartnerFactory()
    deal = DealFactory()
    registration = DealRegistrationFactory(partner=partner)

    first = _book(partner, deal_ids=[deal.id, deal.id], registration_ids=[registration.id])
    again = _book(partner, amount="999.00")

    assert again.pk == first.pk
    entry = CostEntry.objects.get()
    assert (entry.source, entry.reference, entry.amount, entry.partner_id) == (
        "mdf_reimbursement",
        "payout:7",
        Decimal("120.50"),
        partner.id,
    )
    links = {(link.deal_id, link.registration_id) for link in CostEntryLink.objects.all()}
    assert links == {(deal.id, None), (None, registration.id)}


def test_recorded_costs_keep_their_default_source():
    assert CostEntry.objects.create(date=date(2026, 1, 1), amount=5, category="tooling").source == "recorded"


def test_booking_refuses_implausible_values_and_unbooked_sources():
    partner = PartnerFactory()
    with pytest.raises(ValidationError) as caught:
        _book(partner, amount="-3")
    assert "amount" in caught.value.message_dict
    with pytest.raises(ValueError):
        book_program_cost(
            source=CostEntry.Source.RECORDED,
            reference="x",
            date=date(2026, 1, 1),
            amount=Decimal(1),
            category=CostEntry.Category.MDF,
            partner=partner,
        )
    assert not CostEntry.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_bookings_of_one_reference_give_one_cost():
    partner = PartnerFactory()
    barrier = threading.Barrier(2)
    booked: list[int] = []

    def book() -> None:
        try:
            with transaction.atomic():
                barrier.wait(timeout=10)
                booked.append(_book(partner, reference="mdf-claim:1").pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=book) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(booked) == 2
    assert CostEntry.objects.filter(reference="mdf-claim:1").count() == 1
