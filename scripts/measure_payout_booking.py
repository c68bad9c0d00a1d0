"""Time marking one payout batch of N payouts paid (economics.payouts.payout_batch_mark_paid).

    DATABASE_URL=postgres://…/<db> .venv/bin/python scripts/measure_payout_booking.py --payouts 2000

Works in the database DATABASE_URL names (migrated first) and leaves it as it was: everything it
writes (N partners, each with two approved ledger entries on deals of their own, the month's batch,
the payment and its costs) is inside one transaction that is rolled back at the end. The timed part
is the service call plus the deferred constraint checks a commit would run (`check_constraints`),
as an acting user, so the audit entries are written as a page's would be. Figures:
docs/benchmarks.md, "Commission ledger".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payouts", type=int, default=2000)
    parser.add_argument("--month", default="2026-10")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    call_command("migrate", verbosity=0)
    month = date.fromisoformat(f"{args.month}-01")

    class Rollback(Exception):
        pass

    try:
        with transaction.atomic():
            user, batch = _program(args.payouts, month)
            seconds, queries = _timed_mark_paid(user, batch, month)
            _report(args.payouts, batch, seconds, queries)
            raise Rollback
    except Rollback:
        pass
    print(f"rolled back; database {connection.settings_dict['NAME']} as it was")


def _program(payouts: int, month: date):
    """N partners with a 60.00 earning and a 15.00 one each (75.00 a payout), and their batch."""
    from django.contrib.auth import get_user_model

    from deals.models import Account, Deal
    from economics.models import CommissionEntry, CommissionPlan, CommissionRule
    from economics.payouts import payout_batch_create
    from partners.models import JoinSource, Partner

    source = JoinSource.objects.create(name="Payout bench", kind=JoinSource.Kind.WEBSITE)
    partners = Partner.objects.bulk_create(
        Partner(
            name=f"Payout bench partner {i:05d}",
            type=Partner.Type.RESELLER,
            join_source=source,
            status=Partner.Status.ACTIVE,
            applied_at=date(2026, 1, 2),
            joined_at=date(2026, 1, 10),
        )
        for i in range(payouts)
    )
    account = Account.objects.create(name="Payout bench customer", domain="payout-bench.example")
    won = datetime.combine(month, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    deals = Deal.objects.bulk_create(
        (
            Deal(
                account=account,
                name=f"Payout bench deal {i}",
                amount=Decimal("600.00"),
                created_at=won - timedelta(days=60),
                closed_at=won - timedelta(days=45),
                status=Deal.Status.WON,
                sourcing_partner=partner,
            )
            for partner in partners
            for i in range(2)
        ),
        batch_size=2000,
    )
    plan = CommissionPlan.objects.create(name="Payout bench plan", effective_from=date(2025, 1, 1))
    rule = CommissionRule.objects.create(
        plan=plan, kind=CommissionRule.Kind.PERCENT_SOURCED, rate=Decimal("10")
    )
    CommissionEntry.objects.bulk_create(
        (
            CommissionEntry(
                partner_id=deal.sourcing_partner_id,
                rule=rule,
                basis="revenue",
                kind=CommissionEntry.Kind.EARNING,
                deal=deal,
                amount=amount,
                base_amount=Decimal("600.00"),
                rate=Decimal("10"),
                earned_at=won - timedelta(days=45),
                hold_until=won - timedelta(days=15),
                status=CommissionEntry.Status.APPROVED,
                decided_at=won,
            )
            for deal, amount in zip(deals, [Decimal("60.00"), Decimal("15.00")] * payouts, strict=True)
        ),
        batch_size=2000,
    )
    user = get_user_model().objects.create_user(username="payout-bench", email="payout-bench@example.com")
    batch, _ = payout_batch_create(month=month)
    return user, batch


def _timed_mark_paid(user, batch, month: date) -> tuple[float, int]:
    from django.db import connection

    from economics.payouts import next_month, payout_batch_mark_paid
    from prm.acting import Actor, Channel, acting

    statements = 0

    def count(execute, sql, params, many, context):
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    actor = Actor(label=user.username, user=user)
    with acting(channel=Channel.PAGE, actor=actor), connection.execute_wrapper(count):
        started = time.perf_counter()
        payout_batch_mark_paid(batch=batch, paid_on=next_month(month) + timedelta(days=4), paid_by=user)
        connection.check_constraints()  # what the commit would check (deferred foreign keys)
        seconds = time.perf_counter() - started
    return seconds, statements


def _report(payouts: int, batch, seconds: float, queries: int) -> None:
    from auditlog.models import LogEntry

    from kpis.models import CostEntry, CostEntryLink, FactChange

    costs = CostEntry.objects.filter(reference__startswith="payout:")
    print(
        f"{payouts} payouts marked paid in {seconds:.2f} s ({payouts / seconds:,.0f} payouts/s), "
        f"{queries} queries; {costs.count()} costs, "
        f"{CostEntryLink.objects.filter(cost_entry__in=costs).count()} links, "
        f"{LogEntry.objects.filter(content_type__model='costentry').count()} cost audit entries, "
        f"{FactChange.objects.filter(source='cost').count()} cost rows in the KPI change log"
    )


if __name__ == "__main__":
    main()
