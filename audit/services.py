"""Trail entries written by hand, where a bulk write fires no signals."""

from auditlog.models import LogEntry
from django.db import transaction

from audit.models import ImportRecord


def import_record(*, source: str, files: dict[str, dict[str, int]]) -> ImportRecord:
    """Record one program import: one entry naming each file with its row counts.

    Call it inside the import's transaction and `acting(channel=Channel.IMPORT)`, so a refused
    import leaves no entry and an accepted one always has its entry.
    """
    with transaction.atomic():
        record = ImportRecord.objects.create(source=source[:255], files=files)
        changes = {"source": ["", record.source]}
        for name, counts in files.items():
            changes[name] = ["", _counts_line(counts)]
        LogEntry.objects.log_create(record, action=LogEntry.Action.CREATE, changes=changes)
    return record


def _counts_line(counts: dict[str, int]) -> str:
    return (
        f"{counts['rows']} rows: {counts['created']} created, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged"
    )
