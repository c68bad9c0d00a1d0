"""Importing an uploaded zip: inline within a request, or as a job a Celery worker runs.

A web request runs under the web statement timeout (prm/database.py), far too short for a large
program; `POST /api/v1/imports/` queues such uploads as an ImportJob instead (docs/interchange.md).
"""

from __future__ import annotations

import logging
import zipfile
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from audit.services import import_record
from interchange.importer import ImportFailed, ImportResult, ProgressCallback, import_program
from interchange.models import ImportJob
from interchange.progress import CachedProgress
from prm.acting import Actor, Channel, acting

logger = logging.getLogger(__name__)

# A refused import lists at most this many bad rows on its job (the count is always exact).
JOB_ERRORS_KEPT = 1000
TASK_NAME = "interchange.tasks.run_import_job"


def import_archive(
    archive: zipfile.ZipFile, *, source: str, on_progress: ProgressCallback | None = None
) -> ImportResult:
    """Import the archive; the import and its one audit trail entry commit together or not at all.
    Raises ImportFailed (nothing written) when any row is invalid."""
    with transaction.atomic():
        result = import_program(archive, on_progress=on_progress)
        if result.files:
            import_record(source=source, files={name: s.counts() for name, s in result.files.items()})
    return result


def result_body(result: ImportResult) -> dict[str, Any]:
    return {
        "files": {name: summary.counts() for name, summary in result.files.items()},
        "lines": result.lines(),
    }


def import_job_submit(*, upload: UploadedFile, actor: Actor, progress_id: str = "") -> ImportJob:
    """Store the upload and queue its import once this transaction commits."""
    if actor.user is None:
        raise ValueError("an import job is requested by a user")
    job = ImportJob(
        requested_by=actor.user,
        token_id=actor.token_id,
        token_name=actor.token_name,
        filename=(upload.name or "upload.zip")[:255],
    )
    job.progress_id = progress_id or f"job-{job.id.hex}"
    job.archive.save(f"{job.id.hex}.zip", upload, save=False)
    job.save()
    _send_after_commit(job)
    return job


def _send_after_commit(job: ImportJob) -> None:
    from celery import current_app

    job_id = str(job.pk)
    # By name, so interchange/ does not import its own tasks module back (a broker that is down
    # loses nothing: the requeue below sends queued jobs again).
    transaction.on_commit(lambda: current_app.tasks[TASK_NAME].delay(job_id), robust=True)


def import_job_run(*, job_id: str) -> ImportJob | None:
    """Run a queued job. A job already finished, or being run by another worker (its row is locked
    for the whole import), is left alone, so a message delivered twice imports once."""
    progress: CachedProgress | None = None
    try:
        with transaction.atomic():
            job = (
                ImportJob.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("requested_by")
                .filter(pk=job_id, status=ImportJob.Status.QUEUED)
                .first()
            )
            if job is None:
                return None
            progress = CachedProgress(user_id=job.requested_by_id, progress_id=job.progress_id)
            with (
                acting(channel=Channel.IMPORT, actor=job.actor()),
                job.archive.open("rb") as file,
                zipfile.ZipFile(file) as archive,
            ):
                result = import_archive(archive, source=job.filename, on_progress=progress)
            job.status, job.result, job.finished_at = (
                ImportJob.Status.SUCCEEDED,
                result_body(result),
                timezone.now(),
            )
            job.save(update_fields=["status", "result", "finished_at"])
    except ImportFailed as failed:
        if progress is not None:
            progress.failed(len(failed.errors))
        return _fail(job_id, failed.errors)
    except (zipfile.BadZipFile, OSError) as exc:
        if progress is not None:
            progress.failed(1)
        return _fail(job_id, [f"Not a readable zip: {exc}"])
    if progress is not None:
        progress.finished(result)
    _discard_archive(job)
    return job


def _fail(job_id: str, errors: list[str]) -> ImportJob | None:
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id, status=ImportJob.Status.QUEUED).first()
        if job is None:
            return None
        job.status, job.finished_at = ImportJob.Status.FAILED, timezone.now()
        job.errors = errors[:JOB_ERRORS_KEPT]
        job.result = {"error_count": len(errors)}
        job.save(update_fields=["status", "finished_at", "errors", "result"])
    _discard_archive(job)
    return job


def _discard_archive(job: ImportJob) -> None:
    if job.archive:
        job.archive.delete(save=False)
        ImportJob.objects.filter(pk=job.pk).update(archive="")


def import_jobs_requeue(*, older_than: timedelta = timedelta(minutes=10)) -> int:
    """Send again the jobs still queued after `older_than` (a lost message, a broker that was down).
    A job a worker is importing right now gets a duplicate message, which finds its row locked."""
    stale = list(
        ImportJob.objects.filter(
            status=ImportJob.Status.QUEUED, created_at__lt=timezone.now() - older_than
        ).values_list("pk", flat=True)[:100]
    )
    for job_id in stale:
        _send_after_commit(ImportJob(pk=job_id))
    return len(stale)


def visible_import_job(*, user: User, job_id: str) -> ImportJob | None:
    """The job if `user` requested it (superusers see every job)."""
    jobs = ImportJob.objects.all() if user.is_superuser else ImportJob.objects.filter(requested_by=user)
    return jobs.filter(pk=job_id).first()
