"""The outbox of domain events, and the change log the change feed serves.

Both are written in the transaction of the change they describe, so a change that rolls back
leaves neither; consumers read them after commit.
"""

import uuid

from django.conf import settings
from django.db import models


class Event(models.Model):
    """One domain event: what happened (type), to what (object), by whom and through what."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=60)
    occurred_at = models.DateTimeField()
    # Who acted and through what (prm.acting): a label that survives the user's deletion.
    actor_label = models.CharField(max_length=200)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    channel = models.CharField(max_length=20)
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    # The object: "app_label.model" and its primary key.
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    # The partner the event is about, when there is one (partner-scoped readers see only theirs).
    partner_id = models.BigIntegerField(null=True, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["type", "occurred_at"], name="event_type_time")]

    def __str__(self) -> str:
        return f"{self.type} {self.object_type}#{self.object_id} ({self.uuid})"


class Change(models.Model):
    """One created, updated or deleted object of an API resource, in the change feed's order.

    `txid` is the PostgreSQL transaction id (xid8) that wrote the row; the feed orders by
    (txid, id) and serves only rows of transactions older than every one still in flight, so no
    row can appear later behind a cursor already handed out (docs/integrations.md, "The change
    feed"). On SQLite writes are serialised and txid stays 0: `id` alone is commit order.
    """

    class Action(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        DELETED = "deleted"

    txid = models.BigIntegerField(default=0)
    resource = models.CharField(max_length=40)
    object_id = models.BigIntegerField()
    action = models.CharField(max_length=10, choices=Action.choices)
    changed_at = models.DateTimeField()
    # The partner the object belongs to (registration, touch, sourced deal, the partner itself).
    partner_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["txid", "id"]
        indexes = [
            models.Index(fields=["txid", "id"], name="change_feed_order"),
            models.Index(fields=["partner_id", "txid", "id"], name="change_feed_partner_order"),
        ]

    def __str__(self) -> str:
        return f"{self.resource}#{self.object_id} {self.action}"
