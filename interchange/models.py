"""Imports queued to run in a worker: an upload too large for a web request (docs/interchange.md)."""

import uuid

from django.conf import settings
from django.db import models

from prm.acting import Actor


class ImportJob(models.Model):
    """One uploaded zip, imported by a Celery worker all or nothing.

    It stays `queued` until the import commits: the job's outcome is written in the import's own
    transaction, so a worker that dies mid-import leaves the job queued for the next delivery.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # The API token the upload came with: the import's changes are recorded as made through it.
    token_id = models.IntegerField(null=True, blank=True)
    token_name = models.CharField(max_length=100, blank=True, default="")
    filename = models.CharField(max_length=255)
    # Deleted once the job ends: only a queued job keeps its upload.
    archive = models.FileField(upload_to="imports/", max_length=200, blank=True)
    progress_id = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import {self.id} ({self.status})"

    def actor(self) -> Actor:
        user = self.requested_by
        return Actor(label=user.get_username(), user=user, token_id=self.token_id, token_name=self.token_name)
