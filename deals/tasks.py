"""Celery tasks for deals; each one calls a single service."""

import logging

from celery import shared_task

from deals.services import registrations_expire, registrations_warn_expiring

logger = logging.getLogger(__name__)


@shared_task(name="deals.tasks.expire_registrations")
def expire_registrations() -> int:
    """Hourly (beat): expire submitted registrations whose protection window has ended. Idempotent."""
    expired = registrations_expire()
    if expired:
        logger.info("Expired %d deal registration(s) past their protection window", expired)
    return expired


@shared_task(name="deals.tasks.warn_expiring_registrations")
def warn_expiring_registrations() -> int:
    """Daily (beat): warn partners once of registrations whose protection ends within a week."""
    return registrations_warn_expiring()
