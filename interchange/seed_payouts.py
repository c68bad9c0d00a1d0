"""Demo payouts for seed_demo (docs/economics.md, "Payouts").

Runs after the demo ledger exists (interchange/seed_economics.py builds and reviews it). Approved
entries are dated as the monthly review that approved them would have been (the first month's
end after their hold ends, never later than now), so the three months before this one each get
their batch: the two oldest paid on the 5th of the following month, last month's left open.
Without a ledger (the economics seed absent), a small one is made first: 10 % of the won deals
each partner sourced in the last five months, and one clawback.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from deals.models import Deal
from economics.models import CommissionEntry, CommissionPlan, CommissionRule
from economics.payout_models import PayoutBatch
from economics.payouts import month_cutoff, next_month, payout_batch_create, payout_batch_mark_paid
from partners.models import PartnerUser
from program.models import ProgramSettings

MONTHS_BACK = 3


def _months_before(month: date, count: int) -> date:
    for _ in range(count):
        month = (month - timedelta(days=1)).replace(day=1)
    return month


def seed_payouts(today: date) -> int:
    """Make the demo batches (once); returns how many."""
    if PayoutBatch.objects.exists():
        return 0
    now = timezone.now()
    if not CommissionEntry.objects.exists():
        _standalone_ledger(today, now)
    _date_reviews(now)
    this_month = today.replace(day=1)
    first = _months_before(this_month, MONTHS_BACK)
    month, made = first, 0
    while month < this_month:
        batch, _ = payout_batch_create(month=month)
        made += 1
        if next_month(month) < this_month:
            payout_batch_mark_paid(batch=batch, paid_on=next_month(month) + timedelta(days=4))
        month = next_month(month)
    return made


def _date_reviews(now: datetime) -> None:
    """Approved entries get the date of the month-end review after their hold (capped at now):
    one update per month of hold ends."""
    approved = CommissionEntry.objects.filter(status=CommissionEntry.Status.APPROVED)
    first = approved.order_by("hold_until").values_list("hold_until", flat=True).first()
    if first is None:
        return
    zone = ZoneInfo(ProgramSettings.load().time_zone)
    month = first.astimezone(zone).date().replace(day=1)
    while True:
        cutoff = month_cutoff(month)
        start = datetime.combine(month, time.min, tzinfo=cutoff.tzinfo)
        if start > now:
            break
        review = min(cutoff - timedelta(hours=12), now)
        approved.filter(hold_until__gte=start, hold_until__lt=cutoff).update(
            decided_at=Greatest(Value(review, output_field=DateTimeField()), F("hold_until"))
        )
        month = next_month(month)
    approved.filter(decided_at__gt=now).update(decided_at=now)


def _standalone_ledger(today: date, now: datetime) -> None:
    plan, _ = CommissionPlan.objects.get_or_create(
        key="demo-payouts",
        defaults={"name": "Demo sourced commission", "effective_from": date(today.year - 3, 1, 1)},
    )
    rule, _ = CommissionRule.objects.get_or_create(
        plan=plan, kind=CommissionRule.Kind.PERCENT_SOURCED, defaults={"rate": Decimal("10")}
    )
    since = datetime.combine(_months_before(today.replace(day=1), 5), time.min, tzinfo=now.tzinfo)
    deals = Deal.objects.filter(
        status=Deal.Status.WON, sourcing_partner__isnull=False, closed_at__gte=since, closed_at__lte=now
    ).order_by("closed_at", "id")
    entries = [
        CommissionEntry(
            partner_id=deal.sourcing_partner_id,
            rule=rule,
            basis="revenue",
            deal=deal,
            amount=(deal.amount * Decimal("0.10")).quantize(Decimal("0.01")),
            base_amount=deal.amount,
            rate=Decimal("10"),
            earned_at=deal.closed_at,
            hold_until=deal.closed_at + timedelta(days=30),
            status=CommissionEntry.Status.APPROVED,
            decided_at=now,
        )
        for deal in deals
        if deal.closed_at is not None and deal.sourcing_partner_id is not None and deal.amount > 0
    ]
    CommissionEntry.objects.bulk_create(entries)
    # Entries still in their hold are pending, as the review would have left them.
    CommissionEntry.objects.filter(hold_until__gt=now).update(
        status=CommissionEntry.Status.PENDING, decided_at=None
    )
    _demo_clawback(today, rule)


def _demo_clawback(today: date, rule: CommissionRule) -> None:
    """The demo login's biggest deal of two months ago came back last month: its commission is
    clawed back, so last month's statement shows the balance carried (negative when the
    clawback outweighs the month's earnings)."""
    login = PartnerUser.objects.filter(user__username="partner").select_related("partner").first()
    two_back, last = _months_before(today.replace(day=1), 2), _months_before(today.replace(day=1), 1)
    entries = CommissionEntry.objects.filter(status=CommissionEntry.Status.APPROVED, deal__isnull=False)
    if login is not None:
        entries = entries.filter(partner=login.partner)
    zone = ZoneInfo(ProgramSettings.load().time_zone)
    window = (month_cutoff(_months_before(two_back, 1)), month_cutoff(two_back))
    target = entries.filter(hold_until__gte=window[0], hold_until__lt=window[1]).order_by("-amount").first()
    if target is None:
        return
    when = datetime.combine(last.replace(day=10), time(12), tzinfo=zone)
    CommissionEntry.objects.create(
        partner_id=target.partner_id,
        rule=rule,
        basis="revenue",
        kind=CommissionEntry.Kind.CLAWBACK,
        deal=target.deal,
        amount=-target.amount,
        base_amount=target.base_amount,
        rate=target.rate,
        earned_at=when,
        hold_until=when,
        status=CommissionEntry.Status.APPROVED,
        decided_at=when,
    )
