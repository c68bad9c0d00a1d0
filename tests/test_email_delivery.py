"""Delivery of outbound email: once only, retries with backoff, given up after N attempts,
lost tasks requeued; a real worker delivers an approval to a real SMTP server."""

import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from deals.services import registration_approve, registration_submit
from notifications.kinds import KINDS
from notifications.models import OutboundEmail
from notifications.services import (
    DeliveryDeferred,
    email_deliver,
    emails_requeue_overdue,
    emails_retry_failed,
    notify,
    retry_delay_seconds,
)
from notifications.tasks import deliver_email, requeue_pending_emails
from prm.celery import app as celery_app
from prm.email import email_settings
from tests.factories import PartnerFactory, PartnerUserFactory, UserFactory
from tests.test_celery_worker import celery_worker, wait_for


def _queue_reset_mail(to: str = "ana@example.com") -> OutboundEmail:
    notify(
        kind="password_reset",
        emails=[to],
        context={"user": UserFactory(username="ana"), "reset_url": "http://x/r", "valid_hours": 72},
    )
    return OutboundEmail.objects.get(to=to)


@pytest.mark.django_db
def test_a_temporary_refusal_is_retried_with_backoff_then_sent(smtp_server):
    email = _queue_reset_mail()
    smtp_server.refuse_next(1)
    before = timezone.now()
    with pytest.raises(DeliveryDeferred) as deferred:
        email_deliver(email_id=email.pk)
    assert deferred.value.seconds == 60
    email.refresh_from_db()
    assert (email.status, email.attempts, email.sent_at) == ("pending", 1, None)
    assert "451" in email.last_error and "Try again later" in email.last_error
    assert before + timedelta(seconds=60) <= email.next_attempt_at <= timezone.now() + timedelta(seconds=60)
    assert smtp_server.received == []

    assert email_deliver(email_id=email.pk) == "sent"
    email.refresh_from_db()
    assert (email.status, email.attempts, email.last_error) == ("sent", 2, "")
    assert [m.rcpt_tos for m in smtp_server.received] == [["ana@example.com"]]


def test_the_backoff_doubles_up_to_the_cap(settings):
    settings.EMAIL_RETRY_BACKOFF_SECONDS = 60
    settings.EMAIL_RETRY_BACKOFF_MAX_SECONDS = 3600
    assert [retry_delay_seconds(n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


@pytest.mark.django_db
def test_the_task_gives_up_after_the_maximum_attempts(smtp_server, settings):
    settings.EMAIL_MAX_ATTEMPTS = 3
    email = _queue_reset_mail()
    smtp_server.refuse_next(10)
    # Run in this process, each retry follows at once (no countdown); the row decides when to stop.
    result = deliver_email.apply(args=(email.pk,))
    assert result.get() == "failed"
    email.refresh_from_db()
    assert (email.status, email.attempts, email.sent_at) == ("failed", 3, None)
    assert "451" in email.last_error
    assert smtp_server.received == []
    assert email_deliver(email_id=email.pk) == "skipped"


@pytest.mark.django_db
def test_a_permanent_refusal_fails_at_once(smtp_server):
    smtp_server.handler.unknown_recipients.add("gone@example.com")
    email = _queue_reset_mail("gone@example.com")
    assert email_deliver(email_id=email.pk) == "failed"
    email.refresh_from_db()
    assert (email.status, email.attempts) == ("failed", 1)
    assert "550" in email.last_error


RESET_URL = "http://127.0.0.1:8000/reset/MQ/c0ffee-1234/"


def _queue_secret_reset_mail(to: str = "ana@example.com") -> OutboundEmail:
    notify(
        kind="password_reset",
        emails=[to],
        context={"user": UserFactory(username="ana"), "reset_url": RESET_URL, "valid_hours": 72},
    )
    return OutboundEmail.objects.get(to=to)


@pytest.mark.django_db
def test_a_sent_reset_mail_keeps_no_link_in_the_outbox_but_a_plain_kind_keeps_its_body(smtp_server):
    reset = _queue_secret_reset_mail()
    assert RESET_URL in reset.text and RESET_URL in reset.html  # needed until it is sent
    assert email_deliver(email_id=reset.pk) == "sent"
    (mail,) = smtp_server.wait_for(1)
    assert RESET_URL in mail.text and RESET_URL in mail.html
    reset.refresh_from_db()
    assert (reset.status, reset.text, reset.html) == ("sent", "", "")
    assert (reset.to, reset.kind, reset.subject, reset.attempts) == (
        "ana@example.com",
        "password_reset",
        "Reset your password",
        1,
    )

    partner = PartnerFactory(name="Northwind")
    PartnerUserFactory(partner=partner, user__username="bea", user__email="bea@example.com")
    registration = registration_submit(
        partner=partner, account_name="Acme", domain="acme.com", amount=Decimal("5000.00")
    )
    registration_approve(registration=registration, decided_by=None)
    approved = OutboundEmail.objects.get(kind="registration_approved")
    body = (approved.text, approved.html)
    assert email_deliver(email_id=approved.pk) == "sent"
    approved.refresh_from_db()
    assert f"/portal/registrations/{registration.pk}/" in approved.text
    assert (approved.status, approved.text, approved.html) == ("sent", *body)


@pytest.mark.django_db
def test_a_reset_mail_given_up_on_is_blanked_and_not_retried(smtp_server):
    smtp_server.handler.unknown_recipients.add("gone@example.com")
    reset = _queue_secret_reset_mail("gone@example.com")
    assert email_deliver(email_id=reset.pk) == "failed"
    reset.refresh_from_db()
    assert (reset.status, reset.text, reset.html) == ("failed", "", "")
    assert "550" in reset.last_error
    # There is nothing left to send: the reader asks for a new link instead.
    assert emails_retry_failed(email_ids=[reset.pk]) == 0
    assert OutboundEmail.objects.get(pk=reset.pk).status == "failed"


@pytest.mark.django_db
def test_a_temporary_failure_keeps_the_secret_body_for_the_retry(smtp_server):
    reset = _queue_secret_reset_mail()
    smtp_server.refuse_next(1)
    with pytest.raises(DeliveryDeferred):
        email_deliver(email_id=reset.pk)
    reset.refresh_from_db()
    assert reset.status == "pending" and RESET_URL in reset.text


def test_the_kinds_whose_mail_carries_a_live_link_are_secret():
    assert sorted(kind.name for kind in KINDS.values() if kind.secret) == [
        "application_decided",
        "invitation",
        "password_reset",
    ]


@pytest.mark.django_db
def test_the_admin_never_shows_the_body_of_a_secret_kind(admin_client):
    reset = _queue_secret_reset_mail()
    page = admin_client.get(f"/admin/notifications/outboundemail/{reset.pk}/change/")
    assert page.status_code == 200
    content = page.content.decode()
    assert "Reset your password" in content and "ana@example.com" in content
    assert "c0ffee-1234" not in content

    plain = OutboundEmail.objects.create(
        to="bea@example.com",
        kind="application_received",
        subject="Applied",
        text="Pitch: we sell a lot",
        next_attempt_at=timezone.now(),
    )
    page = admin_client.get(f"/admin/notifications/outboundemail/{plain.pk}/change/")
    assert "Pitch: we sell a lot" in page.content.decode()


@pytest.mark.django_db
def test_an_unreachable_server_is_a_temporary_failure(settings):
    from tests.smtp import free_port

    for name, value in email_settings(
        f"smtp://127.0.0.1:{free_port()}", default_file_path=Path("/x")
    ).items():
        setattr(settings, name, value)
    email = _queue_reset_mail()
    with pytest.raises(DeliveryDeferred):
        email_deliver(email_id=email.pk)
    email.refresh_from_db()
    assert email.status == "pending" and email.attempts == 1 and "Connection refused" in email.last_error


@pytest.mark.django_db
def test_overdue_pending_emails_are_queued_again(
    smtp_server, eager_tasks, django_capture_on_commit_callbacks
):
    now = timezone.now()
    lost = _queue_reset_mail("lost@example.com")
    recent = _queue_reset_mail("recent@example.com")
    sent = _queue_reset_mail("sent@example.com")
    OutboundEmail.objects.filter(pk=lost.pk).update(next_attempt_at=now - timedelta(seconds=61))
    OutboundEmail.objects.filter(pk=recent.pk).update(next_attempt_at=now - timedelta(seconds=30))
    OutboundEmail.objects.filter(pk=sent.pk).update(
        next_attempt_at=now - timedelta(hours=1), status="sent", sent_at=now
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert requeue_pending_emails() == 1
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["lost@example.com"]]
    assert dict(OutboundEmail.objects.values_list("to", "status")) == {
        "lost@example.com": "sent",
        "recent@example.com": "pending",
        "sent@example.com": "sent",
    }
    # A requeued email that is still pending counts as overdue again only a minute after its requeue.
    OutboundEmail.objects.filter(pk=recent.pk).delete()
    OutboundEmail.objects.filter(pk=lost.pk).update(status="pending", sent_at=None)
    requeued_at = OutboundEmail.objects.get(pk=lost.pk).next_attempt_at
    assert emails_requeue_overdue(now=requeued_at + timedelta(seconds=59)) == 0
    assert emails_requeue_overdue(now=requeued_at + timedelta(seconds=60)) == 1


def test_the_beat_schedule_requeues_every_minute_and_warns_daily():
    beat = settings.CELERY_BEAT_SCHEDULE
    assert beat["requeue-pending-emails"] == {
        "task": "notifications.tasks.requeue_pending_emails",
        "schedule": 60.0,
        "options": {"expires": 60},
    }
    assert beat["warn-expiring-registrations"]["task"] == "deals.tasks.warn_expiring_registrations"
    celery_app.loader.import_default_modules()  # what a worker does at start
    assert {beat[name]["task"] for name in beat} <= set(celery_app.tasks)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_deliveries_of_one_email_send_it_once(smtp_server):
    smtp_server.handler.delay = 1.0  # the first delivery holds its claim while the second arrives
    email = _queue_reset_mail()
    results: list[str] = []
    barrier = threading.Barrier(2)

    def deliver() -> None:
        try:
            barrier.wait()
            results.append(email_deliver(email_id=email.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["sent", "skipped"]
    assert len(smtp_server.wait_for(1)) == 1
    email.refresh_from_db()
    assert (email.status, email.attempts) == ("sent", 1)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_mails_an_approval_to_the_partner_member_through_smtp(smtp_server, broker):
    _, _, env_extra = broker
    partner = PartnerFactory(name="Northwind")
    PartnerUserFactory(partner=partner, user__username="ana", user__email="ana@example.com")
    queue = f"mail-test-{uuid.uuid4().hex[:8]}"
    # The worker shares this process's broker (Redis, or the filesystem broker under VAR_DIR).
    with celery_worker(
        Path(settings.VAR_DIR), queue, "--pool=solo", EMAIL_URL=smtp_server.url, **env_extra
    ) as worker:
        default_queue = celery_app.conf.task_default_queue
        celery_app.conf.task_default_queue = queue
        try:
            registration = registration_submit(
                partner=partner, account_name="Acme", domain="acme.com", amount=Decimal("5000.00")
            )
            registration_approve(registration=registration, decided_by=None)
            (mail,) = smtp_server.wait_for(1, seconds=90)
        finally:
            celery_app.conf.task_default_queue = default_queue
        assert mail.rcpt_tos == ["ana@example.com"]
        assert mail.subject == "Deal registration approved: Acme"
        assert f"/portal/registrations/{registration.pk}/" in mail.text
        email = wait_for(
            lambda: OutboundEmail.objects.filter(status="sent").first(), 30, "the sent row", worker
        )
        assert (email.to, email.kind, email.attempts) == ("ana@example.com", "registration_approved", 1)


@pytest.mark.django_db
def test_an_operator_sends_failed_emails_again_from_the_admin(
    admin_client, smtp_server, eager_tasks, django_capture_on_commit_callbacks
):
    failed = _queue_reset_mail("failed@example.com")
    sent = _queue_reset_mail("sent@example.com")
    OutboundEmail.objects.filter(pk=failed.pk).update(
        status="failed", attempts=5, last_error="SMTPServerDisconnected"
    )
    OutboundEmail.objects.filter(pk=sent.pk).update(status="sent", attempts=1, sent_at=timezone.now())
    assert admin_client.get("/admin/notifications/outboundemail/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/notifications/outboundemail/",
            {"action": "retry_failed", "_selected_action": [failed.pk, sent.pk]},
        )
    assert response.status_code == 302
    assert [m.rcpt_tos for m in smtp_server.wait_for(1)] == [["failed@example.com"]]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_error) == ("sent", 1, "")
    assert OutboundEmail.objects.get(pk=sent.pk).attempts == 1


@pytest.mark.django_db
def test_a_mail_queued_for_a_user_deactivated_before_sending_is_not_sent(smtp_server):
    user = UserFactory(username="leaving", email="leaving@example.com")
    notify(kind="registration_approved", users=[user], context={"registration": None, "partner": None})
    email = OutboundEmail.objects.get(to="leaving@example.com")
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert email_deliver(email_id=email.pk) == "failed"
    email.refresh_from_db()
    assert email.last_error == "the recipient's login was deactivated before the mail went out"
    assert smtp_server.received == []
