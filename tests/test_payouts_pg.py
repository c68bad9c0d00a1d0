"""Payout batches under concurrency, on PostgreSQL: one batch per month, one payment per batch."""

import threading
from collections.abc import Callable
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection

from economics.models import CommissionEntry
from economics.payout_models import Payout, PayoutBatch, PayoutLine
from economics.payouts import payout_batch_create, payout_batch_mark_paid
from events.models import Event
from kpis.models import CostEntry
from tests.factories import PartnerFactory
from tests.support.payouts import entry

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

OCT = date(2026, 10, 1)


def twice_at_once(work: Callable[[], object]) -> list[object]:
    barrier = threading.Barrier(2)
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(work())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_making_the_months_batch_on_two_workers_at_once_gives_one_batch():
    alpha, bravo = PartnerFactory(), PartnerFactory()
    entry(alpha, "70.00", approved_on=date(2026, 10, 4))
    entry(alpha, "10.25", approved_on=date(2026, 10, 5))
    entry(bravo, "20.00", approved_on=date(2026, 10, 6))

    results = twice_at_once(lambda: payout_batch_create(month=OCT))

    assert sorted(created for _, created in results) == [False, True]
    assert {batch.pk for batch, _ in results} == {PayoutBatch.objects.get().pk}
    assert sorted(Payout.objects.values_list("amount", "carried_out")) == [
        (Decimal("0.00"), Decimal("20.00")),
        (Decimal("80.25"), Decimal("0.00")),
    ]
    assert PayoutLine.objects.count() == 3
    assert Event.objects.filter(type="payout_batch.created").count() == 1


def test_marking_a_batch_paid_on_two_workers_at_once_pays_once():
    alpha, bravo = PartnerFactory(), PartnerFactory()
    entry(alpha, "70.00", approved_on=date(2026, 10, 4))
    entry(bravo, "55.00", approved_on=date(2026, 10, 6))
    batch, _ = payout_batch_create(month=OCT)

    results = twice_at_once(lambda: payout_batch_mark_paid(batch=batch, paid_on=date(2026, 11, 2)))

    assert sorted(paid for _, paid in results) == [False, True]
    assert sorted(CostEntry.objects.values_list("amount", flat=True)) == [Decimal("55.00"), Decimal("70.00")]
    assert CommissionEntry.objects.filter(status="paid").count() == 2
    assert Event.objects.filter(type="payout_batch.paid").count() == 1
