"""Celery tasks of the import; each one calls a single service."""

from celery import shared_task

from interchange.jobs import import_job_run, import_jobs_requeue


@shared_task(name="interchange.tasks.run_import_job", acks_late=True)
def run_import_job(job_id: str) -> str:
    job = import_job_run(job_id=job_id)
    return job.status if job is not None else "skipped"


@shared_task(name="interchange.tasks.requeue_import_jobs")
def requeue_import_jobs() -> int:
    return import_jobs_requeue()
