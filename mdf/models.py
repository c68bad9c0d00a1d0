"""Market development funds: budgets per quarter, partners' requests, claims with proof, and their files.

The money rules (what a budget has left, who may claim what) are in mdf.services and mdf.selectors;
docs/mdf.md states them.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from program.fields import MoneyField, PlausibleDateField


class MdfBudget(models.Model):
    """The funds of one quarter, for one partner or as a pool shared by the partners of a tier."""

    quarter = models.CharField(max_length=7, help_text="2026-Q1")
    starts_on = PlausibleDateField()
    ends_on = PlausibleDateField()
    partner = models.ForeignKey(
        "partners.Partner", on_delete=models.PROTECT, null=True, blank=True, related_name="mdf_budgets"
    )
    tier = models.CharField(
        max_length=50, blank=True, default="", help_text="A pool for this tier's partners."
    )
    amount = MoneyField()
    note = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-starts_on", "tier", "partner__name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(partner__isnull=False, tier="") | (Q(partner__isnull=True) & ~Q(tier="")),
                name="mdf_budget_partner_or_tier",
            ),
            models.UniqueConstraint(
                fields=["quarter", "partner"],
                condition=Q(partner__isnull=False),
                name="mdf_budget_partner_once",
            ),
            models.UniqueConstraint(
                fields=["quarter", "tier"], condition=~Q(tier=""), name="mdf_budget_tier_once"
            ),
            models.CheckConstraint(condition=Q(amount__gt=Decimal("0")), name="mdf_budget_amount_positive"),
            models.CheckConstraint(condition=Q(ends_on__gte=F("starts_on")), name="mdf_budget_dates_ordered"),
        ]

    def __str__(self) -> str:
        return f"MDF {self.quarter} {self.scope_label}: {self.amount}"

    @property
    def scope_label(self) -> str:
        return f"tier {self.tier} pool" if self.tier else str(self.partner)


class MdfRequest(models.Model):
    """A partner's request for funds for one marketing activity, decided by a partner manager."""

    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired unclaimed"

    class ActivityType(models.TextChoices):
        EVENT = "event", "Event or trade show"
        WEBINAR = "webinar", "Webinar"
        DIGITAL = "digital", "Digital advertising"
        EMAIL = "email", "Email campaign"
        CONTENT = "content", "Content or collateral"
        TRAINING = "training", "Sales training"
        TELEMARKETING = "telemarketing", "Telemarketing"
        OTHER = "other", "Other"

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="mdf_requests")
    budget = models.ForeignKey(MdfBudget, on_delete=models.PROTECT, related_name="requests")
    activity_type = models.CharField(max_length=20, choices=ActivityType.choices)
    title = models.CharField(max_length=200)
    description = models.TextField(max_length=4000, blank=True, default="")
    starts_on = PlausibleDateField()
    ends_on = PlausibleDateField()
    amount_requested = MoneyField(help_text="The activity's planned cost asked for.")
    expected_leads = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED)
    submitted_at = models.DateTimeField()
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    amount_approved = MoneyField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decision_comment = models.TextField(max_length=2000, blank=True, default="")
    # Unclaimed approved funds are released after this day (set by the manager; mdf.services.requests_expire).
    claim_deadline = PlausibleDateField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["submitted", "approved", "rejected", "expired"]),
                name="mdf_request_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(ends_on__gte=F("starts_on")), name="mdf_request_dates_ordered"
            ),
            models.CheckConstraint(
                condition=Q(amount_approved__isnull=True) | Q(amount_approved__lte=F("amount_requested")),
                name="mdf_request_approved_within_requested",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["approved", "expired"])
                | Q(amount_approved__isnull=False, claim_deadline__isnull=False),
                name="mdf_request_approved_has_amount_and_deadline",
            ),
        ]

    def __str__(self) -> str:
        return f"MDF request #{self.pk} {self.title} ({self.partner})"


class MdfClaim(models.Model):
    """What the partner spent on an approved activity, with its results and proof; at most one claim
    per request is live (submitted, approved or reimbursed) at a time."""

    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        REIMBURSED = "reimbursed", "Reimbursed"

    LIVE = (Status.SUBMITTED, Status.APPROVED, Status.REIMBURSED)

    request = models.ForeignKey(MdfRequest, on_delete=models.PROTECT, related_name="claims")
    amount_claimed = MoneyField()
    leads = models.PositiveIntegerField(default=0, help_text="Leads the activity produced.")
    summary = models.TextField(max_length=4000, blank=True, default="")
    registrations = models.ManyToManyField("deals.DealRegistration", blank=True, related_name="mdf_claims")
    deals = models.ManyToManyField("deals.Deal", blank=True, related_name="mdf_claims")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED)
    submitted_at = models.DateTimeField()
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    amount_approved = MoneyField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decision_comment = models.TextField(max_length=2000, blank=True, default="")
    reimbursed_on = PlausibleDateField(null=True, blank=True)
    reimbursed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    cost_entry = models.ForeignKey(
        "kpis.CostEntry", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-submitted_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["submitted", "approved", "rejected", "reimbursed"]),
                name="mdf_claim_status_valid",
            ),
            models.UniqueConstraint(
                fields=["request"],
                condition=Q(status__in=["submitted", "approved", "reimbursed"]),
                name="mdf_claim_one_live_per_request",
            ),
            models.CheckConstraint(
                condition=Q(amount_approved__isnull=True) | Q(amount_approved__lte=F("amount_claimed")),
                name="mdf_claim_approved_within_claimed",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["approved", "reimbursed"]) | Q(amount_approved__isnull=False),
                name="mdf_claim_approved_has_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"MDF claim #{self.pk} on request #{self.request_id}"


def proof_upload_path(proof: MdfProofFile, filename: str) -> str:
    """A fresh, unguessable name per upload, with the checked format's extension."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"mdf/claims/{proof.claim_id}/{secrets.token_hex(12)}.{extension}"


class MdfProofFile(models.Model):
    """One proof-of-performance file of a claim; served only through a view that checks who asks."""

    claim = models.ForeignKey(MdfClaim, on_delete=models.CASCADE, related_name="files")
    file = models.FileField(upload_to=proof_upload_path, max_length=200)
    name = models.CharField(max_length=200, help_text="The name it was uploaded with.")
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    uploaded_at = models.DateTimeField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["uploaded_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.claim})"
