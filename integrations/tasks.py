"""Celery tasks for webhooks; each one calls a single service."""

from celery import shared_task

from integrations.services import DeliveryDeferred, deliveries_requeue_overdue, delivery_attempt


@shared_task(bind=True, name="integrations.tasks.deliver_webhook", max_retries=None)
def deliver_webhook(self, delivery_id: int) -> str:
    """One attempt of a webhook delivery; the row decides when to retry and when to give up."""
    try:
        return delivery_attempt(delivery_id=delivery_id)
    except DeliveryDeferred as deferred:
        raise self.retry(countdown=deferred.seconds) from deferred


@shared_task(name="integrations.tasks.requeue_webhook_deliveries")
def requeue_webhook_deliveries() -> int:
    """Every WEBHOOK_REQUEUE_SECONDS (beat): send again deliveries whose task or worker was lost."""
    return deliveries_requeue_overdue()
