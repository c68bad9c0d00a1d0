"""Demo commission plans and a built ledger for seed_demo (docs/economics.md).

Two plans: every partner earns 5 % of its attributed revenue (capped at 2,500.00 an entry) and
25.00 per approved registration; gold and platinum partners instead earn 10 % of what they source
(priority 10, capped at 5,000.00) plus 250.00 per first sale. The ledger is built, then the
entries earned more than two months ago are approved as a past monthly review would have done
(entries of deals of 40,000.00 or more declined), so the review queue shows this month's and
last month's work.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.utils import timezone

from economics.ledger import build_ledger
from economics.models import CommissionEntry, CommissionPlan, CommissionRule
from economics.services import plan_save


def seed_economics(today: date) -> int:
    """Create the demo plans (once) and build and review the ledger; returns the entries made."""
    if CommissionPlan.objects.filter(key__in=["demo-standard", "demo-gold"]).exists():
        return 0
    start = date(today.year - 3, 1, 1)
    kind = CommissionRule.Kind
    plan_save(
        plan=CommissionPlan(key="demo-standard", name="Standard partner commission", effective_from=start),
        rules=[
            {"kind": kind.PERCENT_ATTRIBUTED, "rate": Decimal("5"), "cap": Decimal("2500.00")},
            {"kind": kind.FIXED_REGISTRATION, "amount": Decimal("25.00")},
        ],
    )
    plan_save(
        plan=CommissionPlan(
            key="demo-gold",
            name="Gold and platinum resellers",
            description="Sourced revenue pays more for the top tiers.",
            priority=10,
            effective_from=start,
            tiers=["gold", "platinum"],
        ),
        rules=[
            {"kind": kind.PERCENT_SOURCED, "rate": Decimal("10"), "cap": Decimal("5000.00")},
            {"kind": kind.FIXED_FIRST_SALE, "amount": Decimal("250.00")},
        ],
    )
    build_ledger()
    # A bulk load, like the rest of the demo program: set-based, no domain event per entry.
    now = timezone.now()
    old = CommissionEntry.objects.filter(
        status="pending", earned_at__lt=now - timedelta(days=60), hold_until__lte=now
    )
    old.filter(deal_id__isnull=False, deal__amount__gte=Decimal("40000")).update(
        status="declined", decided_at=now, decline_reason="Over the single-deal review limit (demo)"
    )
    old.update(status="approved", decided_at=now)
    return CommissionEntry.objects.count()
