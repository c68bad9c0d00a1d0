"""Reads of the payouts: who sees money, a partner's earnings, statements and the AP export."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum

from economics.models import CommissionEntry
from economics.payout_models import Payout, PayoutBatch, PayoutLine
from partners import access
from partners.models import Partner

ZERO = Decimal("0.00")
STATEMENT_COLUMNS = ["date", "kind", "basis", "source", "status", "amount"]
AP_COLUMNS = ["partner", "partner_key", "amount", "currency", "period", "reference"]


def text_cell(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def visible_batches(user: access.AnyUser) -> QuerySet[PayoutBatch]:
    if access.is_staff_reader(user):
        return PayoutBatch.objects.all()
    return PayoutBatch.objects.none()


def visible_payouts(user: access.AnyUser) -> QuerySet[Payout]:
    """Staff see every payout; a partner user its own partner's (members are refused before this)."""
    sees_all, partner = access.row_scope(user)
    qs = Payout.objects.select_related("batch", "partner")
    if sees_all:
        return qs
    if partner is None:
        return qs.none()
    return qs.filter(partner=partner)


def batch_totals(batch: PayoutBatch) -> dict[str, Decimal | int]:
    figures = batch.payouts.aggregate(
        paid=Sum("amount"),
        carried=Sum("carried_out"),
        entries=Sum("entries_total"),
    )
    return {
        "amount": figures["paid"] or ZERO,
        "carried_out": figures["carried"] or ZERO,
        "entries_total": figures["entries"] or ZERO,
        "payouts": batch.payouts.count(),
        "payable": batch.payouts.filter(amount__gt=0).count(),
    }


def batches_with_totals(
    batches: QuerySet[PayoutBatch], *, limit: int
) -> list[tuple[PayoutBatch, dict[str, Decimal | int]]]:
    """The first `limit` batches, each with `batch_totals`' figures, summed in the one query that
    reads them (not three queries a batch)."""
    annotated = batches.annotate(
        paid=Sum("payouts__amount"),
        carried=Sum("payouts__carried_out"),
        entries=Sum("payouts__entries_total"),
        payout_count=Count("payouts"),
        payable_count=Count("payouts", filter=Q(payouts__amount__gt=0)),
    )
    return [
        (
            batch,
            {
                "amount": batch.paid or ZERO,
                "carried_out": batch.carried or ZERO,
                "entries_total": batch.entries or ZERO,
                "payouts": batch.payout_count,
                "payable": batch.payable_count,
            },
        )
        for batch in annotated[:limit]
    ]


@dataclass(frozen=True)
class Earnings:
    """A partner's money at a glance (docs/economics.md, "Payouts")."""

    pending: Decimal
    approved: Decimal
    paid: Decimal

    @property
    def balance(self) -> Decimal:
        """Approved, unpaid entries (clawbacks included): the carried balance plus what no batch
        has settled yet."""
        return self.approved


def partner_earnings(partner: Partner) -> Earnings:
    entries = CommissionEntry.objects.filter(partner=partner)
    sums = entries.aggregate(
        pending=Sum("amount", filter=Q(status=CommissionEntry.Status.PENDING)),
        approved=Sum("amount", filter=Q(status=CommissionEntry.Status.APPROVED)),
    )
    paid = Payout.objects.filter(partner=partner, status=Payout.Status.PAID).aggregate(s=Sum("amount"))["s"]
    return Earnings(
        pending=sums["pending"] or ZERO,
        approved=sums["approved"] or ZERO,
        paid=paid or ZERO,
    )


def statement_lines(payout: Payout) -> QuerySet[PayoutLine]:
    return (
        PayoutLine.objects.filter(payout=payout)
        .select_related("entry", "entry__deal", "entry__registration", "entry__registration__account")
        .order_by("entry__earned_at", "entry_id")
    )


def source_label(entry: CommissionEntry) -> str:
    if entry.deal is not None:
        return f"Deal {entry.deal.key or entry.deal.pk}: {entry.deal.name}"
    registration = entry.registration
    if registration is None:
        return ""
    return f"Registration {registration.key or registration.pk}: {registration.account.name}"


def statement_rows(payout: Payout) -> Iterator[list[str]]:
    """The statement as CSV rows: a header, the opening balance, the lines, then the totals."""
    yield STATEMENT_COLUMNS
    yield ["", "carried_in", "", "", "", str(payout.carried_in)]
    for line in statement_lines(payout):
        entry = line.entry
        yield [
            f"{entry.earned_at:%Y-%m-%d}",
            entry.kind,
            entry.basis,
            text_cell(source_label(entry)),
            entry.status,
            str(entry.amount),
        ]
    yield ["", "balance", "", "", "", str(payout.balance)]
    yield [
        "",
        "paid" if payout.status == Payout.Status.PAID else "payable",
        "",
        "",
        payout.status,
        str(payout.amount),
    ]
    yield ["", "carried_out", "", "", "", str(payout.carried_out)]


def ap_rows(batch: PayoutBatch) -> Iterator[list[str]]:
    """The accounts-payable export: one row per partner paid in the batch."""
    yield AP_COLUMNS
    for payout in (
        batch.payouts.filter(amount__gt=0).select_related("partner").order_by("partner__name", "id")
    ):
        yield [
            text_cell(payout.partner.name),
            text_cell(payout.partner.key or str(payout.partner.pk)),
            str(payout.amount),
            batch.currency,
            batch.period,
            payout.reference,
        ]
