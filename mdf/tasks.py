"""Celery tasks for MDF; each one calls a single service."""

import logging

from celery import shared_task

from mdf.services import requests_expire

logger = logging.getLogger(__name__)


@shared_task(name="mdf.tasks.expire_requests")
def expire_requests() -> int:
    """Daily (beat): release the funds of approved requests unclaimed past their deadline. Idempotent."""
    expired = requests_expire()
    if expired:
        logger.info("Expired %d MDF request(s) unclaimed past their claim deadline", expired)
    return expired
