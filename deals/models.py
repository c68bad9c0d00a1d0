"""Customer accounts, deal registrations, the deals they become and the partners who touched them."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from deals.rules import deal_errors, normalise_domain, registration_errors
from partners.rules import acting_partner_errors
from program.fields import MoneyField, PlausibleDateField, PlausibleDateTimeField
from program.validation import merge_errors

MONEY = {"max_digits": 14, "decimal_places": 2}


class Account(models.Model):
    key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    name = models.CharField(max_length=200)
    domain = models.CharField(
        max_length=253, blank=True, default="", help_text="Normalised (lowercase, no scheme or www.)."
    )

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["domain"]),
            models.Index(fields=["name"], name="account_name"),  # the deal list sorted by account
        ]
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="account_name_not_blank")]

    def __str__(self) -> str:
        return f"{self.name} ({self.domain})" if self.domain else self.name

    def save(self, *args, **kwargs) -> None:
        # Matching by domain must never depend on how a caller typed it.
        self.domain = normalise_domain(self.domain)
        super().save(*args, **kwargs)

    @property
    def export_key(self) -> str:
        return self.key or str(self.pk)


class Deal(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        WON = "won", "Won"
        LOST = "lost", "Lost"

    key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="deals")
    name = models.CharField(max_length=200, blank=True, default="")
    amount = MoneyField(**MONEY)
    created_at = PlausibleDateTimeField()
    closed_at = PlausibleDateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    sourcing_partner = models.ForeignKey(
        "partners.Partner",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="sourced_deals",
    )
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    # sourced, influenced or direct (docs/kpis.md, "Segments"), kept by the database's triggers
    # (deals/migrations/0005_deal_segment.py) on every write of the deal or of its touches,
    # whatever writes it (ORM, queryset updates, the importer's COPY): the deal list filters on
    # it without a per-deal EXISTS. Read only: what Django writes here is recomputed. NULL only
    # in a Deal not saved yet (Django inserts NULL; the trigger fills it in).
    segment = models.CharField(max_length=10, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "closed_at"]),
            models.Index(fields=["sourcing_partner", "closed_at"]),
            models.Index(fields=["created_at"]),
            # The deal list: a segment (and status) counted from the index alone, and sorted
            # by amount within it; its other sorts walk their own column's index.
            models.Index(fields=["segment", "status", "amount"], name="deal_segment_status_amount"),
            models.Index(fields=["amount"], name="deal_amount"),
            models.Index(fields=["closed_at"], name="deal_closed_at"),
            models.Index(fields=["name"], name="deal_name"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=Decimal("0")), name="deal_amount_positive"),
            models.CheckConstraint(
                condition=Q(closed_at__isnull=True) | Q(closed_at__gte=F("created_at")),
                name="deal_closed_not_before_created",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["won", "lost"]) | Q(closed_at__isnull=False),
                name="deal_closed_status_has_closed_at",
            ),
            models.CheckConstraint(condition=Q(status__in=["open", "won", "lost"]), name="deal_status_valid"),
            models.CheckConstraint(
                condition=~Q(status="open") | Q(closed_at__isnull=True), name="deal_open_has_no_closed_at"
            ),
        ]

    def __str__(self) -> str:
        label = self.name or f"Deal {self.export_key}"
        return f"{label} — {self.account.name if self.account_id else '?'} ({self.get_status_display()})"

    def clean(self) -> None:
        errors = deal_errors(
            amount=self.amount, created_at=self.created_at, closed_at=self.closed_at, status=self.status
        )
        if self.sourcing_partner_id is not None:
            errors = merge_errors(
                errors, acting_partner_errors(self.sourcing_partner, field="sourcing_partner")
            )
        if self.pk is not None:
            errors = merge_errors(errors, self._registration_sourcing_errors())
        if errors:
            raise ValidationError(errors)

    def _registration_sourcing_errors(self) -> dict[str, list[str]]:
        """A deal opened from an approved registration is sourced by the partner that registered it."""
        registration = DealRegistration.objects.filter(deal_id=self.pk).select_related("partner").first()
        if registration is None or registration.partner_id == self.sourcing_partner_id:
            return {}
        return {
            "sourcing_partner": [
                f"this deal came from registration #{registration.pk} by {registration.partner}, "
                "which is its sourcing partner"
            ]
        }

    @property
    def export_key(self) -> str:
        return self.key or str(self.pk)


class DealRegistration(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"

    key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="registrations")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="registrations")
    amount = MoneyField(**MONEY)
    expected_close_date = PlausibleDateField(null=True, blank=True)
    notes = models.TextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SUBMITTED)
    submitted_at = PlausibleDateTimeField()
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = PlausibleDateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decision_reason = models.TextField(blank=True, default="")
    # Until this moment no other partner can have a registration for the same account approved.
    protection_expires_at = models.DateTimeField(null=True, blank=True)
    # When the partner was warned that the protection ends soon (registration_expiring); once only.
    expiry_warning_sent_at = models.DateTimeField(null=True, blank=True)
    # The earlier registration by another partner for the same account found when this was submitted.
    conflict_with = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="conflicting_registrations"
    )
    conflict_override_reason = models.TextField(blank=True, default="")
    deal = models.OneToOneField(
        Deal, on_delete=models.SET_NULL, null=True, blank=True, related_name="registration"
    )
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        indexes = [
            models.Index(fields=["status", "submitted_at"]),
            models.Index(fields=["partner", "submitted_at"]),
            models.Index(fields=["decided_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=Decimal("0")), name="registration_amount_positive"),
            models.CheckConstraint(
                condition=Q(decided_at__isnull=True) | Q(decided_at__gte=F("submitted_at")),
                name="registration_decided_not_before_submitted",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["approved", "rejected"]) | Q(decided_at__isnull=False),
                name="registration_decision_has_decided_at",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["submitted", "approved", "rejected", "expired"]),
                name="registration_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(deal__isnull=True) | Q(status="approved"),
                name="registration_deal_only_when_approved",
            ),
            models.CheckConstraint(
                condition=Q(protection_expires_at__isnull=True)
                | Q(protection_expires_at__gte=F("submitted_at")),
                name="registration_protection_not_before_submitted",
            ),
            models.CheckConstraint(
                condition=~Q(conflict_with=F("pk")), name="registration_not_in_conflict_with_itself"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.partner} → {self.account} ({self.get_status_display()})"

    def clean(self) -> None:
        errors = registration_errors(
            amount=self.amount, submitted_at=self.submitted_at, decided_at=self.decided_at, status=self.status
        )
        if self.partner_id is not None:
            errors = merge_errors(errors, acting_partner_errors(self.partner))
        if errors:
            raise ValidationError(errors)

    @property
    def export_key(self) -> str:
        return self.key or str(self.pk)


class Touch(models.Model):
    class Kind(models.TextChoices):
        INTRODUCTION = "introduction", "Introduction"
        CO_SELL = "co_sell", "Co-selling meeting"
        TECHNICAL = "technical", "Technical help"
        MARKETPLACE = "marketplace", "Marketplace listing"
        REFERRAL = "referral", "Referral of stakeholders"
        OTHER = "other", "Other"

    deal = models.ForeignKey(Deal, on_delete=models.CASCADE, related_name="touches")
    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="touches")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    touched_at = PlausibleDateTimeField()
    # Ties on touched_at are broken by creation order, which is id order (row order on import).
    created_at = models.DateTimeField(auto_now_add=True)
    # An edit of the touch alone (the admin's touch page) must move the KPI source fingerprint.
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["deal_id", "touched_at", "id"]
        verbose_name_plural = "touches"
        indexes = [
            models.Index(fields=["partner", "touched_at"]),
            models.Index(fields=["deal", "touched_at", "id"]),
            # A partner's touched deal ids from the index alone (deals.selectors.partner_deal_ids):
            # its touches lie all over the table, one heap page each, at 1M deals.
            models.Index(fields=["partner", "deal"]),
        ]
        constraints = [
            # Touches have no key: a whole row is its identity, which makes re-imports idempotent.
            models.UniqueConstraint(
                fields=["deal", "partner", "kind", "touched_at"], name="touch_unique_row"
            ),
        ]

    def __str__(self) -> str:
        when = f"{self.touched_at:%Y-%m-%d}" if self.touched_at else "?"
        partner = self.partner if self.partner_id else "?"
        return f"{partner} — {self.get_kind_display()} on deal {self.deal_id} at {when}"

    def clean(self) -> None:
        if self.partner_id is not None and (errors := acting_partner_errors(self.partner)):
            raise ValidationError(errors)
