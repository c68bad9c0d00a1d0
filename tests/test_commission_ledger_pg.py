"""Concurrent ledger builds and concurrent approvals on PostgreSQL: one entry, one decision."""

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from economics import ledger, services
from economics.models import CommissionEntry, CommissionPlan, CommissionRule, CommissionSettings
from events.models import Event
from program.models import ProgramSettings
from tests.factories import DealFactory, PartnerFactory

CLOSED = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def run_in_threads(target, n=2):
    errors = []

    def wrapped(i):
        try:
            target(i)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


def setup_program():
    # The settings rows exist in a running program (the first read creates them); created here,
    # not by the first of two concurrent builds, whose uncommitted insert would hold the other
    # one's before the barrier both wait at.
    ProgramSettings.load()
    CommissionSettings.load()
    partner = PartnerFactory()
    plan = CommissionPlan.objects.create(name="P", effective_from=date(2026, 1, 1))
    CommissionRule.objects.create(plan=plan, kind="percent_sourced", rate=Decimal("10"))
    deal = DealFactory(sourcing_partner=partner, amount=Decimal("1000.00"), status="won", closed_at=CLOSED)
    return partner, deal


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_builds_at_once_create_one_entry(monkeypatch):
    partner, deal = setup_program()
    # Both builds have computed their difference (no entry yet) before either writes.
    barrier = threading.Barrier(2)
    apply = ledger._apply

    def apply_together(diff, *, now):
        barrier.wait(timeout=30)
        return apply(diff, now=now)

    monkeypatch.setattr(ledger, "_apply", apply_together)
    run_in_threads(lambda i: ledger.build_ledger())
    assert list(CommissionEntry.objects.values_list("partner_id", "deal_id", "amount", "sequence")) == [
        (partner.pk, deal.pk, Decimal("100.00"), 0)
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_clawback_builds_at_once_create_one_clawback(monkeypatch):
    _partner, deal = setup_program()
    ledger.build_ledger()
    services.entries_approve(
        entry_ids=CommissionEntry.objects.values_list("pk", flat=True),
        by=None,
        now=CLOSED + timedelta(days=30),
    )
    deal.status = "lost"
    deal.save()
    barrier = threading.Barrier(2)
    apply = ledger._apply

    def apply_together(diff, *, now):
        barrier.wait(timeout=30)
        return apply(diff, now=now)

    monkeypatch.setattr(ledger, "_apply", apply_together)
    run_in_threads(lambda i: ledger.build_ledger())
    assert sorted(CommissionEntry.objects.values_list("kind", "amount")) == [
        ("clawback", Decimal("-100.00")),
        ("earning", Decimal("100.00")),
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_approvals_at_once_decide_each_entry_once():
    setup_program()
    ledger.build_ledger()
    entry = CommissionEntry.objects.get()
    results = []
    run_in_threads(
        lambda i: results.append(
            services.entries_approve(entry_ids=[entry.pk], by=None, now=CLOSED + timedelta(days=31))
        )
    )
    assert sorted(len(r.decided) for r in results) == [0, 1]
    assert sorted(len(r.not_pending) for r in results) == [0, 1]
    assert Event.objects.filter(type="commission_entry.approved").count() == 1
