"""Monthly payout batches (docs/economics.md, "Payouts").

A batch settles one calendar month: every approved ledger entry not yet in a batch and approved by
the month's end becomes a line of its partner's payout. A payout pays the partner's balance (the
balance carried in from its previous payout plus its new lines) when that balance reaches the
minimum payout; otherwise nothing is paid and the whole balance, negative after clawbacks too,
carries to the next month.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class PayoutBatch(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PAID = "paid", "Paid"

    # The first day of the month the batch settles; one batch per month.
    month = models.DateField(unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    currency = models.CharField(max_length=3)
    # The minimum payout in force when the batch was made.
    minimum_payout = models.DecimalField(max_digits=14, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    paid_on = models.DateField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    paid_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-month"]
        verbose_name_plural = "payout batches"
        constraints = [
            models.CheckConstraint(condition=Q(month__day=1), name="payout_batch_month_first_day"),
            models.CheckConstraint(
                condition=Q(status__in=["open", "paid"]), name="payout_batch_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status="open") | (Q(paid_on__isnull=False) & Q(paid_at__isnull=False)),
                name="payout_batch_paid_has_date",
            ),
        ]

    def __str__(self) -> str:
        return f"Payout batch {self.period}"

    @property
    def period(self) -> str:
        return self.month.strftime("%Y-%m")


class Payout(models.Model):
    """One partner's settlement in one batch; its statement for the month."""

    class Status(models.TextChoices):
        PAYABLE = "payable", "Payable"
        CARRIED = "carried", "Carried forward"
        PAID = "paid", "Paid"

    batch = models.ForeignKey(PayoutBatch, on_delete=models.PROTECT, related_name="payouts")
    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="payouts")
    # The previous payout's carried_out (0 for a partner's first payout).
    carried_in = models.DecimalField(max_digits=14, decimal_places=2)
    # The sum of this payout's lines (earnings and clawbacks).
    entries_total = models.DecimalField(max_digits=14, decimal_places=2)
    # carried_in + entries_total.
    balance = models.DecimalField(max_digits=14, decimal_places=2)
    # What the partner is paid: the balance when it reaches the minimum payout, else 0.
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    # balance - amount: what the next payout starts from.
    carried_out = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.CharField(max_length=10, choices=Status.choices)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "partner__name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "partner"], name="payout_one_per_partner_and_batch"),
            models.CheckConstraint(
                condition=Q(balance=F("carried_in") + F("entries_total")), name="payout_balance_adds_up"
            ),
            models.CheckConstraint(
                condition=Q(carried_out=F("balance") - F("amount")), name="payout_carried_out_adds_up"
            ),
            models.CheckConstraint(
                condition=(Q(amount=0) & Q(status="carried"))
                | (Q(amount__gt=0) & Q(status__in=["payable", "paid"])),
                name="payout_status_matches_amount",
            ),
            models.CheckConstraint(
                condition=~Q(status="paid") | Q(paid_at__isnull=False), name="payout_paid_has_paid_at"
            ),
        ]

    def __str__(self) -> str:
        return f"Payout {self.reference}"

    @property
    def reference(self) -> str:
        """What accounts payable quotes on the payment, and the booked cost's reference."""
        return f"PAY-{self.batch.month:%Y%m}-{self.pk}"


class PayoutLine(models.Model):
    """A ledger entry settled by a payout: each entry is in at most one payout."""

    payout = models.ForeignKey(Payout, on_delete=models.CASCADE, related_name="lines")
    entry = models.OneToOneField(
        "economics.CommissionEntry", on_delete=models.PROTECT, related_name="payout_line"
    )

    class Meta:
        ordering = ["payout", "entry__earned_at", "entry_id"]

    def __str__(self) -> str:
        return f"{self.payout} ← entry {self.entry_id}"
