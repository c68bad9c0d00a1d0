"""Partners, the channels they joined through, and the people who act for them."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from deals.rules import REFERRED_BY_ITSELF, merge_errors, partner_errors
from program.fields import PlausibleDateField


class JoinSource(models.Model):
    class Kind(models.TextChoices):
        WEBSITE = "website", "Website"
        EMAIL = "email", "Email"
        PAID_ADS = "paid_ads", "Paid ads"
        OUTREACH = "outreach", "Internal outreach"
        REFERRAL = "referral", "Referral by a partner"
        PARTNER_NETWORK = "partner_network", "Partner network"
        MARKETPLACE = "marketplace", "Marketplace"
        EVENT = "event", "Event"
        OTHER = "other", "Other"

    # The caller's stable identifier from INTERCHANGE imports; rows created in the app have none.
    key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    kind__in=[
                        "website",
                        "email",
                        "paid_ads",
                        "outreach",
                        "referral",
                        "partner_network",
                        "marketplace",
                        "event",
                        "other",
                    ]
                ),
                name="join_source_kind_valid",
            ),
            models.CheckConstraint(condition=~Q(name=""), name="join_source_name_not_blank"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def export_key(self) -> str:
        return self.key or str(self.pk)


class Partner(models.Model):
    class Type(models.TextChoices):
        RESELLER = "reseller", "Reseller"
        REFERRAL = "referral", "Referral"
        AFFILIATE = "affiliate", "Affiliate"
        TECHNOLOGY = "technology", "Technology"
        AGENCY = "agency", "Agency"
        DISTRIBUTOR = "distributor", "Distributor"
        MSP = "msp", "Managed service provider"

    class Status(models.TextChoices):
        APPLIED = "applied", "Applied"
        ACTIVE = "active", "Active"
        INACTIVE = "inactive", "Inactive"
        CHURNED = "churned", "Churned"
        REJECTED = "rejected", "Rejected"

    # Statuses of an organisation that was approved into the program (it has a joined_at).
    JOINED_STATUSES = (Status.ACTIVE, Status.INACTIVE, Status.CHURNED)

    key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=20, choices=Type.choices)
    tier = models.CharField(max_length=50, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.APPLIED)
    join_source = models.ForeignKey(JoinSource, on_delete=models.PROTECT, related_name="partners")
    applied_at = PlausibleDateField()
    # The approval date; null for applications that were never approved.
    joined_at = PlausibleDateField(null=True, blank=True)
    referred_by = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="referrals"
    )
    manager = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="managed_partners",
        help_text="The staff partner manager who owns this partner.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["joined_at"]), models.Index(fields=["applied_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(joined_at__isnull=True) | Q(joined_at__gte=F("applied_at")),
                name="partner_joined_not_before_applied",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status__in=["active", "inactive", "churned"], joined_at__isnull=False)
                    | Q(status__in=["applied", "rejected"], joined_at__isnull=True)
                ),
                name="partner_status_matches_joined_at",
            ),
            models.CheckConstraint(
                condition=Q(
                    type__in=[
                        "reseller",
                        "referral",
                        "affiliate",
                        "technology",
                        "agency",
                        "distributor",
                        "msp",
                    ]
                ),
                name="partner_type_valid",
            ),
            models.CheckConstraint(condition=~Q(referred_by=F("pk")), name="partner_not_referred_by_itself"),
            models.CheckConstraint(condition=~Q(name=""), name="partner_name_not_blank"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Lifecycle transitions need the previous status, so services and the admin form check those.
        errors = partner_errors(status=self.status, applied_at=self.applied_at, joined_at=self.joined_at)
        if self.pk is not None and self.referred_by_id == self.pk:
            errors = merge_errors(errors, {"referred_by": [REFERRED_BY_ITSELF]})
        if errors:
            raise ValidationError(errors)

    @property
    def export_key(self) -> str:
        return self.key or str(self.pk)

    @property
    def has_joined(self) -> bool:
        return self.joined_at is not None


class PartnerUser(models.Model):
    """A login that acts for one partner in the portal and the API."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Partner admin"
        MEMBER = "member", "Partner member"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="partner_membership"
    )
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="users")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        ordering = ["partner__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.partner}"
