"""Celery tasks for deals; each one calls a single service."""

import logging

from celery import shared_task

from deals.services import registrations_expire

logger = logging.getLogger(__name__)


@shared_task(name="deals.tasks.expire_registrations")
def expire_registrations() -> int:
    """Hourly (beat): expire submitted registrations whose protection window has ended. Idempotent."""
    expired = registrations_expire()
    if expired:
        logger.info("Expired %d deal registration(s) past their protection window", expired)
    return expired
