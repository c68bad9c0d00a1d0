"""Commission plans, their rules, and the commission ledger (docs/economics.md).

A plan applies to partners (by tier, type, join source or named partners) during its effective
dates; its rules say what a partner earns. The ledger holds one row per earning or clawback, each
pointing to its source row (a deal or a registration) and the rule that produced it. Amounts are
Decimal to the cent; a clawback is a negative entry, never an edit of a decided one.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from program.fields import MoneyField

MONEY = {"max_digits": 14, "decimal_places": 2}


class CommissionSettings(models.Model):
    """One row (pk=1): the program-wide commission settings."""

    hold_days = models.PositiveIntegerField(
        default=30,
        validators=[MaxValueValidator(3650)],
        help_text="Days after a deal's close (a registration's approval) before its entry can be approved.",
    )
    minimum_payout = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        default=Decimal("50.00"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="A partner's approved balance below this carries to the next month's payout.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "commission settings"
        verbose_name_plural = "commission settings"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="commission_settings_singleton"),
            models.CheckConstraint(
                condition=Q(minimum_payout__gte=0), name="commission_minimum_payout_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"Commission settings (hold {self.hold_days} days, minimum payout {self.minimum_payout})"

    @classmethod
    def load(cls) -> CommissionSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class CommissionPlan(models.Model):
    """Rules that apply to some partners during a date range.

    Applicability: every criterion left empty matches every partner; a partner must match each
    criterion that is set (tiers, types, join sources, named partners).
    """

    key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    # Higher first when several rules of the same basis match one source row (docs/economics.md).
    priority = models.IntegerField(default=0)
    effective_from = models.DateField()
    # Inclusive; null: open-ended.
    effective_to = models.DateField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    tiers = models.JSONField(default=list, blank=True, help_text="Partner tiers (empty: any tier).")
    partner_types = models.JSONField(default=list, blank=True, help_text="Partner types (empty: any type).")
    join_sources = models.ManyToManyField("partners.JoinSource", blank=True, related_name="commission_plans")
    partners = models.ManyToManyField("partners.Partner", blank=True, related_name="commission_plans")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "name", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="commission_plan_name_not_blank"),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gte=F("effective_from")),
                name="commission_plan_dates_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def export_key(self) -> str:
        return self.key or str(self.pk)


class CommissionRule(models.Model):
    class Kind(models.TextChoices):
        PERCENT_SOURCED = "percent_sourced", "Percentage of sourced revenue"
        PERCENT_ATTRIBUTED = "percent_attributed", "Percentage of attributed revenue"
        FIXED_REGISTRATION = "fixed_registration", "Fixed amount per approved registration"
        FIXED_FIRST_SALE = "fixed_first_sale", "Fixed amount per first sale"

    PERCENT_KINDS = (Kind.PERCENT_SOURCED, Kind.PERCENT_ATTRIBUTED)

    key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    plan = models.ForeignKey(CommissionPlan, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    # Percent kinds: the percentage (10 = 10 %).
    rate = models.DecimalField(
        max_digits=7,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.0001")), MaxValueValidator(Decimal("100"))],
    )
    # Fixed kinds: the amount per registration or first sale.
    amount = MoneyField(**MONEY, null=True, blank=True)
    # Optional: the most one entry of this rule earns.
    cap = MoneyField(**MONEY, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["plan_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    kind__in=[
                        "percent_sourced",
                        "percent_attributed",
                        "fixed_registration",
                        "fixed_first_sale",
                    ]
                ),
                name="commission_rule_kind_valid",
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        kind__in=["percent_sourced", "percent_attributed"],
                        rate__gt=0,
                        rate__lte=100,
                        amount__isnull=True,
                    )
                    | Q(kind__in=["fixed_registration", "fixed_first_sale"], rate__isnull=True, amount__gt=0)
                ),
                name="commission_rule_rate_or_amount",
            ),
            models.CheckConstraint(
                condition=Q(cap__isnull=True) | Q(cap__gt=0), name="commission_rule_cap_positive"
            ),
        ]

    def __str__(self) -> str:
        if self.kind in self.PERCENT_KINDS:
            what = (
                f"{self.rate.normalize() if self.rate is not None else '?'} % {self.get_kind_display()[17:]}"
            )
        else:
            what = f"{self.amount} {self.get_kind_display()[13:]}"
        return f"{self.plan}: {what}" + (f" (cap {self.cap})" if self.cap is not None else "")

    @property
    def basis(self) -> str:
        return BASIS_OF_KIND[CommissionRule.Kind(self.kind)]


class Basis(models.TextChoices):
    """What an entry pays for; at most one rule pays per source row, partner and basis."""

    REVENUE = "revenue", "Revenue"
    REGISTRATION = "registration", "Registration"
    FIRST_SALE = "first_sale", "First sale"


BASIS_OF_KIND = {
    CommissionRule.Kind.PERCENT_SOURCED: Basis.REVENUE,
    CommissionRule.Kind.PERCENT_ATTRIBUTED: Basis.REVENUE,
    CommissionRule.Kind.FIXED_REGISTRATION: Basis.REGISTRATION,
    CommissionRule.Kind.FIXED_FIRST_SALE: Basis.FIRST_SALE,
}


class CommissionEntry(models.Model):
    """One line of the commission ledger: an earning (positive) or a clawback (negative)."""

    class Kind(models.TextChoices):
        EARNING = "earning", "Earning"
        CLAWBACK = "clawback", "Clawback"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DECLINED = "declined", "Declined"
        PAID = "paid", "Paid"

    DECIDED = (Status.APPROVED, Status.PAID)

    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, related_name="commission_entries"
    )
    rule = models.ForeignKey(CommissionRule, on_delete=models.PROTECT, related_name="entries")
    basis = models.CharField(max_length=20, choices=Basis.choices)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.EARNING)
    # 0 for the first earning (and first clawback) of a source row; a re-won deal's earning is 1...
    sequence = models.PositiveIntegerField(default=0)
    # The source row: a deal (revenue, first sale) or a registration.
    deal = models.ForeignKey(
        "deals.Deal", on_delete=models.PROTECT, null=True, blank=True, related_name="commission_entries"
    )
    registration = models.ForeignKey(
        "deals.DealRegistration",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="commission_entries",
    )
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    # What the amount was computed from, kept so later plan changes never alter it: the revenue the
    # rate applied to (percent rules), the rate, the fixed amount and the cap at the time.
    base_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    rate = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    fixed_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    cap = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    # When the triggering event happened (deal close, registration approval; clawbacks: their creation).
    earned_at = models.DateTimeField()
    # Not approvable before this moment (earned_at + the hold period).
    hold_until = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decline_reason = models.TextField(blank=True, default="")
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-earned_at", "-id"]
        verbose_name_plural = "commission entries"
        indexes = [
            models.Index(fields=["status", "hold_until"]),
            models.Index(fields=["partner", "status"]),
            models.Index(fields=["earned_at"]),
        ]
        constraints = [
            # The ledger's idempotency key: one entry per source row, partner, basis, kind and sequence.
            models.UniqueConstraint(
                fields=["deal", "partner", "basis", "kind", "sequence"],
                condition=Q(deal__isnull=False),
                name="commission_entry_unique_deal",
            ),
            models.UniqueConstraint(
                fields=["registration", "partner", "basis", "kind", "sequence"],
                condition=Q(registration__isnull=False),
                name="commission_entry_unique_registration",
            ),
            models.CheckConstraint(
                condition=(Q(deal__isnull=False) & Q(registration__isnull=True))
                | (Q(deal__isnull=True) & Q(registration__isnull=False)),
                name="commission_entry_one_source",
            ),
            models.CheckConstraint(
                condition=Q(kind="earning", amount__gt=0) | Q(kind="clawback", amount__lt=0),
                name="commission_entry_sign_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "approved", "declined", "paid"]),
                name="commission_entry_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(basis__in=["revenue", "registration", "first_sale"]),
                name="commission_entry_basis_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="declined") | ~Q(decline_reason=""),
                name="commission_entry_declined_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(status="pending") | Q(decided_at__isnull=False),
                name="commission_entry_decision_has_decided_at",
            ),
            models.CheckConstraint(
                condition=~Q(status="paid") | Q(paid_at__isnull=False),
                name="commission_entry_paid_has_paid_at",
            ),
        ]

    def __str__(self) -> str:
        source = f"deal {self.deal_id}" if self.deal_id else f"registration {self.registration_id}"
        return f"{self.get_kind_display()} {self.amount} for {source} ({self.get_status_display()})"


from economics.payout_models import Payout, PayoutBatch, PayoutLine  # noqa: E402, F401 - payouts (docs/economics.md)
