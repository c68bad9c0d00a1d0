"""Celery tasks for notifications; each one calls a single service."""

from celery import shared_task

from notifications.services import DeliveryDeferred, email_deliver, emails_requeue_overdue


@shared_task(bind=True, name="notifications.tasks.deliver_email", max_retries=None)
def deliver_email(self, email_id: int) -> str:
    """Send one outbound email; the row counts the attempts and decides when to give up."""
    try:
        return email_deliver(email_id=email_id)
    except DeliveryDeferred as deferred:
        raise self.retry(countdown=deferred.seconds) from deferred


@shared_task(name="notifications.tasks.requeue_pending_emails")
def requeue_pending_emails() -> int:
    """Every minute (beat): queue again pending emails whose delivery task was lost."""
    return emails_requeue_overdue()
