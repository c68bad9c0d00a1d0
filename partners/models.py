"""Partners, the channels they joined through, and the people who act for them."""

import secrets
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from partners.rules import REFERRED_BY_ITSELF, partner_errors
from program.fields import PlausibleDateField
from program.validation import merge_errors


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
    # A database default too: the demo seeder writes join sources with COPY, naming its own columns.
    offered_on_application = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Listed on the public application form for applicants to say how they found us.",
    )

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
    """A login that acts for one partner in the portal and the API.

    Admins also manage their partner's users and profile; members register deals and see figures.
    Deactivating a user turns its login off (`user.is_active`), which ends its sessions too.
    """

    class Role(models.TextChoices):
        ADMIN = "admin", "Partner admin"
        MEMBER = "member", "Partner member"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="partner_membership"
    )
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="users")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)
    # Who last deactivated or re-activated the login, and when (the audit trail keeps every change).
    access_changed_at = models.DateTimeField(null=True, blank=True)
    access_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["partner__name", "user__username"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=["admin", "member"]), name="partner_user_role_valid")
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.partner}"

    @property
    def is_admin(self) -> bool:
        return self.role == self.Role.ADMIN


def logo_upload_path(profile: "PartnerProfile", filename: str) -> str:
    """A fresh, unguessable name per upload (the extension is the checked image format's)."""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "img"
    return f"partners/{profile.partner_id}/logo-{secrets.token_hex(8)}.{extension}"


class PartnerProfile(models.Model):
    """What a partner says about itself: company details, a contact and a logo; its admins edit it.

    A table of its own, not columns of Partner: a logo or phone change is not a KPI input, and the
    partner table carries the KPI change-log triggers.
    """

    partner = models.OneToOneField(Partner, on_delete=models.CASCADE, related_name="profile")
    website = models.URLField(max_length=300, blank=True, default="")
    description = models.TextField(max_length=2000, blank=True, default="")
    address = models.TextField(max_length=500, blank=True, default="")
    phone = models.CharField(max_length=40, blank=True, default="")
    contact_name = models.CharField(max_length=200, blank=True, default="")
    contact_email = models.EmailField(blank=True, default="")
    # Served only through partners' logo view, never from a public URL (MEDIA_ROOT is not served).
    logo = models.ImageField(upload_to=logo_upload_path, max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    def __str__(self) -> str:
        return f"Profile of {self.partner}"


class Application(models.Model):
    """What an organisation told us when it applied at /apply/, beside the Partner row it created.

    The Partner (status `applied`, `applied_at`, `join_source`, `referred_by`) is what the KPIs
    count; this row keeps the applicant-only details and how the join source was determined.
    """

    class SourceOrigin(models.TextChoices):
        LINK = "link", "Tracked link"
        REFERRAL = "referral", "Referral link"
        CHOSEN = "chosen", "Chosen by the applicant"
        DEFAULT = "default", "Default source"

    partner = models.OneToOneField(Partner, on_delete=models.CASCADE, related_name="application")
    contact_name = models.CharField(max_length=200)
    contact_email = models.EmailField()
    website = models.URLField(max_length=300, blank=True, default="")
    pitch = models.TextField("how they will sell us", max_length=4000)
    source_origin = models.CharField(max_length=10, choices=SourceOrigin.choices)
    # The link's keys as received, even when unknown (the join source is then a fallback).
    requested_source = models.CharField(max_length=100, blank=True, default="")
    requested_ref = models.CharField(max_length=100, blank=True, default="")
    client_address = models.GenericIPAddressField(null=True, blank=True)
    submitted_at = models.DateTimeField(default=timezone.now, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    rejection_reason = models.TextField(max_length=2000, blank=True, default="")

    class Meta:
        ordering = ["-submitted_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(source_origin__in=["link", "referral", "chosen", "default"]),
                name="application_source_origin_valid",
            ),
            models.CheckConstraint(
                condition=~Q(contact_email=""), name="application_contact_email_not_blank"
            ),
        ]

    def __str__(self) -> str:
        return f"Application of {self.partner}"


class InvitationQuerySet(models.QuerySet):
    def pending(self, now: datetime | None = None) -> "InvitationQuerySet":
        return self.filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now or timezone.now()
        )


class Invitation(models.Model):
    """An invitation to create a login acting for a partner in a role.

    The link carries a signed (id, random token); only the token's SHA-256 is stored, so the
    table alone cannot produce a working link. Single use: accepted_at is set once.
    """

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=PartnerUser.Role.choices)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    token_hash = models.CharField(max_length=64, editable=False)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=["admin", "member"]), name="invitation_role_valid"),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")), name="invitation_expires_after"
            ),
            models.CheckConstraint(
                condition=Q(accepted_at__isnull=True) | Q(revoked_at__isnull=True),
                name="invitation_not_accepted_and_revoked",
            ),
        ]

    def __str__(self) -> str:
        return f"Invitation of {self.email} to {self.partner} ({self.role})"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def state(self, now: datetime | None = None) -> str:
        """accepted, revoked, expired or pending."""
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= (now or timezone.now()):
            return "expired"
        return "pending"
