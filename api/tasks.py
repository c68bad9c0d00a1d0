"""Celery tasks of the API app; each one calls a single function."""

from celery import shared_task

from api import idempotency


@shared_task(name="api.tasks.expire_idempotency_keys")
def expire_idempotency_keys() -> int:
    """Hourly (beat): forget Idempotency-Key answers older than IDEMPOTENCY_KEY_HOURS."""
    return idempotency.expire()
