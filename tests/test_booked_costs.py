"""kpis.costs.book_program_cost(s): the one way economics/ and mdf/ turn money paid into costs."""

import threading
from datetime import date
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from kpis.costs import ProgramCost, book_program_cost, book_program_costs
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


def test_a_bulk_booking_skips_references_already_booked_and_logs_each_new_cost_once():
    alpha, bravo = PartnerFactory(), PartnerFactory()
    deal = DealFactory()
    first = _book(alpha, reference="payout:1", amount="40.00")

    booked = book_program_costs(
        source=CostEntry.Source.COMMISSION_PAYOUT,
        category=CostEntry.Category.COMMISSION,
        date=date(2026, 4, 5),
        costs=[
            ProgramCost(reference="payout:1", partner_id=alpha.pk, amount=Decimal("999.00")),
            ProgramCost(
                reference="payout:2",
                partner_id=bravo.pk,
                amount=Decimal("75.50"),
                deal_ids=(deal.id, deal.id),
            ),
        ],
    )

    # payout:1 stays as first booked (40.00); payout:2 is new, with its one deal linked once.
    assert [(c.reference, c.partner_id, c.amount) for c in booked] == [
        ("payout:2", bravo.pk, Decimal("75.50"))
    ]
    assert sorted(CostEntry.objects.values_list("reference", "amount")) == [
        ("payout:1", Decimal("40.00")),
        ("payout:2", Decimal("75.50")),
    ]
    assert CostEntry.objects.get(pk=first.pk).source == "mdf_reimbursement"
    assert list(CostEntryLink.objects.values_list("cost_entry_id", "deal_id")) == [(booked[0].pk, deal.id)]
    trail = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(CostEntry))
    assert sorted(trail.values_list("object_id", "action")) == [(first.pk, 0), (booked[0].pk, 0)]


def test_a_bulk_booking_with_one_implausible_amount_books_nothing():
    partner = PartnerFactory()
    with pytest.raises(ValidationError) as caught:
        book_program_costs(
            source=CostEntry.Source.COMMISSION_PAYOUT,
            category=CostEntry.Category.COMMISSION,
            date=date(2026, 4, 5),
            costs=[
                ProgramCost(reference="payout:1", partner_id=partner.pk, amount=Decimal("10.00")),
                ProgramCost(reference="payout:2", partner_id=partner.pk, amount=Decimal("0.00")),
            ],
        )
    assert caught.value.message_dict == {"amount": ["must be greater than 0"]}
    assert not CostEntry.objects.exists()
