"""Ledger entries for payout tests: approved earnings and clawbacks with hand-picked amounts."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from deals.models import DealRegistration
from economics.models import CommissionEntry, CommissionPlan, CommissionRule
from partners.models import Partner
from tests.factories import DealFactory


def _rule() -> CommissionRule:
    plan, _ = CommissionPlan.objects.get_or_create(
        name="Payout test plan", defaults={"effective_from": date(2025, 1, 1)}
    )
    rule, _ = CommissionRule.objects.get_or_create(
        plan=plan, kind=CommissionRule.Kind.PERCENT_SOURCED, defaults={"rate": Decimal("10")}
    )
    return rule


def entry(
    partner: Partner,
    amount: str,
    *,
    approved_on: date,
    status: str = CommissionEntry.Status.APPROVED,
    registration: DealRegistration | None = None,
) -> CommissionEntry:
    """An entry of `amount` (negative: a clawback) on a deal of its own (or on `registration`),
    approved on `approved_on`."""
    value = Decimal(amount)
    when = datetime.combine(approved_on, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    kind = CommissionEntry.Kind.EARNING if value > 0 else CommissionEntry.Kind.CLAWBACK
    pending = status == CommissionEntry.Status.PENDING
    return CommissionEntry.objects.create(
        partner=partner,
        rule=_rule(),
        basis="registration" if registration else "revenue",
        kind=kind,
        deal=None if registration else DealFactory(sourcing_partner=partner, amount=abs(value) * 10),
        registration=registration,
        amount=value,
        base_amount=abs(value) * 10,
        rate=Decimal("10"),
        earned_at=when - timedelta(days=40),
        hold_until=when - timedelta(days=10),
        status=status,
        decided_at=None if pending else when,
    )
