"""In-app notifications, the outbox of mail to deliver, and per-user email preferences.

`kind` names a declaration in notifications/kinds.py; it has no database choices, so declaring a
new kind needs no migration.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Notification(models.Model):
    """One message in a user's in-app inbox, rendered when the change happened."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=40)
    title = models.CharField(max_length=255)
    body = models.TextField(blank=True, default="")
    # A path on this site (or a full URL) the notification is about.
    link = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The unread badge on every page: count(*) where user = ? and read_at is null.
            models.Index(
                fields=["user"], condition=Q(read_at__isnull=True), name="notification_unread_by_user"
            ),
            models.Index(fields=["user", "-created_at"], name="notification_user_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user}: {self.title}"

    @property
    def is_unread(self) -> bool:
        return self.read_at is None


class OutboundEmail(models.Model):
    """A rendered email waiting for delivery, or the record of one delivered or given up on."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    to = models.EmailField(max_length=254)
    # The user it was addressed to, when it went to a user (none for applicants and invitees).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=40)
    subject = models.CharField(max_length=255)
    text = models.TextField()
    html = models.TextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # When the next delivery attempt is due; a pending row overdue by a minute lost its task.
    next_attempt_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="outbound_email_pending_due"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sent", "failed"]), name="outbound_email_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(status="sent", sent_at__isnull=False)
                | (~Q(status="sent") & Q(sent_at__isnull=True)),
                name="outbound_email_sent_at_matches_status",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.to} ({self.status})"


class NotificationPreference(models.Model):
    """A user's choice for one kind; without a row the email is on."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(max_length=40)
    email_enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="notification_preference_once_per_kind")
        ]

    def __str__(self) -> str:
        state = "on" if self.email_enabled else "off"
        return f"{self.user}: {self.kind} email {state}"
