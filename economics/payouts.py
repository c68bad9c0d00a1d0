"""Writes of the payouts: make a month's batch, mark a batch paid (docs/economics.md, "Payouts").

Both take a lock and are idempotent: making the same month's batch twice, or on two workers at
once, gives one batch; marking a batch paid twice pays it once and books each payout's cost once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.models import User as AuthUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery, Sum
from django.utils import timezone

from economics.models import CommissionEntry, CommissionSettings
from economics.payout_models import Payout, PayoutBatch, PayoutLine
from events.services import record_event
from events.types import EventType
from kpis.costs import ProgramCost, book_program_costs
from kpis.models import CostEntry
from partners.models import Partner
from program.models import ProgramSettings, program_today
from program.validation import date_errors

User = AbstractBaseUser | AnonymousUser
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Settlement:
    """One partner's figures for a month: what `Payout` stores."""

    carried_in: Decimal
    entries_total: Decimal
    minimum_payout: Decimal

    @property
    def balance(self) -> Decimal:
        return self.carried_in + self.entries_total

    @property
    def amount(self) -> Decimal:
        """The whole balance when it is positive and reaches the minimum; otherwise nothing."""
        balance = self.balance
        return balance if balance > ZERO and balance >= self.minimum_payout else ZERO

    @property
    def carried_out(self) -> Decimal:
        return self.balance - self.amount


def month_start(value: date) -> date:
    return value.replace(day=1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def month_cutoff(month: date) -> datetime:
    """The end of `month` (exclusive) in the program's time zone: entries approved before it settle."""
    zone = ZoneInfo(ProgramSettings.load().time_zone)
    return datetime.combine(next_month(month), time.min, tzinfo=zone)


def batch_month_errors(month: date) -> list[str]:
    """Why a batch for `month` cannot be made now (empty when it can)."""
    if month.day != 1:
        return ["must be a month (its first day)"]
    if messages := date_errors(month):
        return messages
    if month > month_start(program_today()):
        return ["a batch settles a month that has begun; this one has not"]
    later = PayoutBatch.objects.filter(month__gt=month).order_by("month").first()
    if later is not None:
        return [f"batches are made in month order and {later.period} already has one"]
    open_earlier = PayoutBatch.objects.filter(month__lt=month, status=PayoutBatch.Status.OPEN).first()
    if open_earlier is not None:
        return [f"mark the {open_earlier.period} batch paid first"]
    return []


def payout_batch_create(*, month: date, created_by: User | None = None) -> tuple[PayoutBatch, bool]:
    """Make `month`'s batch: (the batch, True), or (the existing batch, False) when it has one.

    Concurrent calls queue on the commission settings row; the unique month is the last guard.
    """
    try:
        with transaction.atomic():
            CommissionSettings.load()
            settings_row = CommissionSettings.objects.select_for_update().get(pk=1)
            existing = PayoutBatch.objects.filter(month=month).first()
            if existing is not None:
                return existing, False
            if messages := batch_month_errors(month):
                raise ValidationError({"month": messages})
            batch = PayoutBatch.objects.create(
                month=month,
                currency=ProgramSettings.load().currency,
                minimum_payout=settings_row.minimum_payout,
                created_by=created_by if isinstance(created_by, AuthUser) else None,
            )
            count = _settle(batch)
            record_event(
                type=EventType.PAYOUT_BATCH_CREATED,
                obj=batch,
                after={**_batch_state(batch), "payouts": count},
            )
            return batch, True
    except IntegrityError:
        # A concurrent call made the month's batch first (the unique month).
        return PayoutBatch.objects.get(month=month), False


def _settle(batch: PayoutBatch) -> int:
    """Write the batch's payouts and lines; returns how many payouts."""
    eligible = CommissionEntry.objects.filter(
        status=CommissionEntry.Status.APPROVED,
        payout_line__isnull=True,
        decided_at__lt=month_cutoff(batch.month),
    )
    # Lock the entries this batch settles, so none changes between the sums and the lines.
    entry_ids = list(eligible.select_for_update(of=("self",)).values_list("id", flat=True))
    totals = {
        row["partner_id"]: row["total"]
        for row in CommissionEntry.objects.filter(id__in=entry_ids)
        .values("partner_id")
        .annotate(total=Sum("amount"))
        .order_by()
    }
    latest_carry = (
        Payout.objects.filter(partner=OuterRef("pk")).order_by("-batch__month").values("carried_out")[:1]
    )
    carried = {
        row["id"]: row["carry"]
        for row in Partner.objects.annotate(carry=Subquery(latest_carry))
        .filter(carry__isnull=False)
        .exclude(carry=0)
        .values("id", "carry")
    }
    payouts = []
    for partner_id in sorted(set(totals) | set(carried)):
        figures = Settlement(
            carried_in=carried.get(partner_id, ZERO),
            entries_total=totals.get(partner_id, ZERO),
            minimum_payout=batch.minimum_payout,
        )
        payouts.append(
            Payout(
                batch=batch,
                partner_id=partner_id,
                carried_in=figures.carried_in,
                entries_total=figures.entries_total,
                balance=figures.balance,
                amount=figures.amount,
                carried_out=figures.carried_out,
                status=Payout.Status.PAYABLE if figures.amount > ZERO else Payout.Status.CARRIED,
            )
        )
    Payout.objects.bulk_create(payouts)
    payout_of = dict(Payout.objects.filter(batch=batch).values_list("partner_id", "id"))
    rows = CommissionEntry.objects.filter(id__in=entry_ids).values_list("id", "partner_id")
    PayoutLine.objects.bulk_create(
        (PayoutLine(payout_id=payout_of[partner_id], entry_id=entry_id) for entry_id, partner_id in rows),
        batch_size=2000,
    )
    return len(payouts)


def payout_batch_mark_paid(
    *, batch: PayoutBatch, paid_on: date, paid_by: User | None = None
) -> tuple[PayoutBatch, bool]:
    """Mark the batch paid in one transaction: its payable payouts and the entries they settle
    become paid, and each paid payout is booked as a commission cost on `paid_on`.

    (the batch, True) when this call paid it; (the batch, False) when it was already paid.
    """
    with transaction.atomic():
        locked = PayoutBatch.objects.select_for_update().get(pk=batch.pk)
        if locked.status == PayoutBatch.Status.PAID:
            return locked, False
        errors = date_errors(paid_on)
        if not errors and paid_on < locked.month:
            errors = [f"a payment for {locked.period} is made on or after {locked.month:%Y-%m-%d}"]
        if errors:
            raise ValidationError({"paid_on": errors})
        if PayoutBatch.objects.filter(month__lt=locked.month, status=PayoutBatch.Status.OPEN).exists():
            raise ValidationError({"paid_on": ["an earlier batch is still open; mark it paid first"]})
        now = timezone.now()
        payable = Payout.objects.filter(batch=locked, status=Payout.Status.PAYABLE)
        paid_ids = list(payable.values_list("id", flat=True))
        payable.update(status=Payout.Status.PAID, paid_at=now)
        paid = Payout.objects.filter(id__in=paid_ids)
        # The entries a paid payout settles: its own lines and those its carried-in balance came from.
        CommissionEntry.objects.filter(
            status=CommissionEntry.Status.APPROVED,
            partner_id__in=paid.values("partner_id"),
            payout_line__payout__batch__month__lte=locked.month,
        ).update(status=CommissionEntry.Status.PAID, paid_at=now)
        _book(locked, paid_on)
        before = _batch_state(locked)
        locked.status = PayoutBatch.Status.PAID
        locked.paid_on = paid_on
        locked.paid_at = now
        locked.paid_by = paid_by if isinstance(paid_by, AuthUser) else None
        locked.save(update_fields=["status", "paid_on", "paid_at", "paid_by"])
        record_event(
            type=EventType.PAYOUT_BATCH_PAID,
            obj=locked,
            before={"status": before["status"]},
            after={**_batch_state(locked), "payouts_paid": len(paid_ids)},
        )
        return locked, True


def _book(batch: PayoutBatch, paid_on: date) -> None:
    """Book each payout of `batch` just paid as a commission cost on `paid_on`, linked to the deals
    and registrations of its own lines: a statement per table for the whole batch."""
    deal_ids: defaultdict[int, list[int]] = defaultdict(list)
    registration_ids: defaultdict[int, list[int]] = defaultdict(list)
    lines = PayoutLine.objects.filter(payout__batch=batch, payout__status=Payout.Status.PAID)
    for payout_id, deal_id, registration_id in lines.values_list(
        "payout_id", "entry__deal_id", "entry__registration_id"
    ).order_by():
        if deal_id is not None:
            deal_ids[payout_id].append(deal_id)
        if registration_id is not None:
            registration_ids[payout_id].append(registration_id)
    note = f"Commission payout {batch.period} ({batch.currency})"
    paid = (
        Payout.objects.filter(batch=batch, status=Payout.Status.PAID)
        .order_by("partner__name", "id")
        .values_list("id", "partner_id", "amount")
    )
    book_program_costs(
        source=CostEntry.Source.COMMISSION_PAYOUT,
        category=CostEntry.Category.COMMISSION,
        date=paid_on,
        costs=[
            ProgramCost(
                reference=f"payout:{payout_id}",
                partner_id=partner_id,
                amount=amount,
                note=note,
                deal_ids=tuple(deal_ids[payout_id]),
                registration_ids=tuple(registration_ids[payout_id]),
            )
            for payout_id, partner_id, amount in paid
        ],
    )


def _batch_state(batch: PayoutBatch) -> dict[str, object]:
    total = batch.payouts.aggregate(total=Sum("amount"))["total"] or ZERO
    return {
        "id": batch.pk,
        "month": batch.period,
        "status": batch.status,
        "currency": batch.currency,
        "minimum_payout": str(batch.minimum_payout),
        "total": str(total),
        "paid_on": batch.paid_on.isoformat() if batch.paid_on else None,
    }
