"""The one row the audit app owns: a program import, which the trail records as a whole.

The CSV importer writes in bulk (bulk_create, bulk_update), which fires no per-row signals, so
the trail holds one entry per import (who, when, through what, files and row counts) attached to
this row instead of one per imported row (docs/audit.md).
"""

from django.db import models


class ImportRecord(models.Model):
    source = models.CharField(max_length=255, help_text="The folder or zip file imported.")
    # file name -> {"rows", "created", "updated", "unchanged"}
    files = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Import of {self.source}"
