"""Notify people of a change: in-app notifications and outbound mail, written with the change.

`notify()` renders a kind's templates at once, inside the caller's transaction, and stores an
in-app `Notification` per user and an `OutboundEmail` per address. Only once the transaction
commits is a delivery task queued for each email, so a change that rolls back leaves no trace and
sends nothing. `email_deliver()` sends one email at most once (the row is claimed under a lock);
`emails_requeue_overdue()` recovers the tasks a broker lost.
"""

import logging
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.validators import validate_email
from django.db import transaction
from django.template import Context
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone

from notifications.kinds import KINDS, Kind, get_kind
from notifications.models import Notification, NotificationPreference, OutboundEmail

logger = logging.getLogger(__name__)

# A pending email whose attempt is overdue by this much lost its task (broker restart, failed enqueue).
OVERDUE_AFTER = timedelta(minutes=1)
REQUEUE_BATCH = 500


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


class DeliveryDeferred(Exception):
    """The SMTP server could not take the email now; try again in `seconds`."""

    def __init__(self, email_id: int, seconds: int, error: str) -> None:
        super().__init__(f"email {email_id}: retry in {seconds}s after {error}")
        self.seconds = seconds


# --- Rendering ----------------------------------------------------------------------------------


def site_url() -> str:
    return settings.SITE_URL.rstrip("/")


def absolute_url(link: str) -> str:
    """A link on this site as a full URL (mail is read away from the site); full URLs stay as they are."""
    if not link or "://" in link:
        return link
    return site_url() + (link if link.startswith("/") else f"/{link}")


def _render_plain(template_name: str, context: dict[str, Any]) -> str:
    # Plain text is not HTML: nothing is escaped, so "R&D" stays "R&D" in the subject and text body.
    # The Django backend's template wraps the engine's (`.template`), which renders a Context with
    # autoescape off; the stubs' backend-neutral template type does not declare it.
    return get_template(template_name).template.render(Context(context, autoescape=False))  # type: ignore[attr-defined]


def render_message(kind: str, context: dict[str, Any]) -> RenderedMessage:
    """The subject (one line), text body and HTML body of `kind` rendered with `context`."""
    folder = f"notifications/{get_kind(kind).name}"
    subject = " ".join(_render_plain(f"{folder}/subject.txt", context).split())
    text = _render_plain(f"{folder}/body.txt", context).strip() + "\n"
    html = get_template(f"{folder}/body.html").render(context)
    return RenderedMessage(subject=subject[:255], text=text, html=html)


def _display_name(user: User) -> str:
    full_name = getattr(user, "get_full_name", lambda: "")()
    return (full_name or "").strip() or user.get_username()


# --- notify() -----------------------------------------------------------------------------------


def _distinct_active_users(users: Iterable[User]) -> list[User]:
    seen: set[int] = set()
    distinct = []
    for user in users:
        if user is None or user.pk is None or user.pk in seen or not user.is_active:
            continue
        seen.add(user.pk)
        distinct.append(user)
    return distinct


def _valid_address(address: str) -> str:
    address = (address or "").strip()
    if not address:
        return ""
    try:
        validate_email(address)
    except ValidationError:
        logger.warning("Not emailing the invalid address %r", address)
        return ""
    return address


def notify(
    *,
    kind: str,
    users: Iterable[User] = (),
    emails: Iterable[str] = (),
    context: dict[str, Any],
    link: str = "",
) -> None:
    """Tell `users` (in-app, and by email unless they turned the kind off) and `emails` about a change.

    Call it inside the transaction that makes the change. Templates are rendered now with `context`
    plus `site_url`, `link` and `link_url` (absolute), `kind` (its declaration), `recipient` (the user,
    or None for a bare address), `recipient_name` and `preferences_url` (empty unless the recipient
    may turn the kind off). Each address receives one email even if listed twice. Delivery is queued
    after commit; a rollback leaves nothing behind.
    """
    declared = get_kind(kind)
    recipients = _distinct_active_users(users)
    muted: set[int] = set()
    if declared.optional and recipients:
        muted = set(
            NotificationPreference.objects.filter(
                user__in=[user.pk for user in recipients], kind=declared.name, email_enabled=False
            ).values_list("user_id", flat=True)
        )
    common = {
        **context,
        "site_url": site_url(),
        "link": link,
        "link_url": absolute_url(link),
        "kind": declared,
    }
    preferences_url = absolute_url(reverse("account:notification_preferences")) if declared.optional else ""
    now = timezone.now()
    notifications: list[Notification] = []
    outbox: list[OutboundEmail] = []
    addressed: set[str] = set()

    def queue_email(address: str, message: RenderedMessage, user: User | None) -> None:
        addressed.add(address.lower())
        outbox.append(
            OutboundEmail(
                to=address,
                user=user,
                kind=declared.name,
                subject=message.subject,
                text=message.text,
                html=message.html,
                next_attempt_at=now,
            )
        )

    for user in recipients:
        message = render_message(
            declared.name,
            {
                **common,
                "recipient": user,
                "recipient_name": _display_name(user),
                "preferences_url": preferences_url,
            },
        )
        notifications.append(
            Notification(user=user, kind=declared.name, title=message.subject, body=message.text, link=link)
        )
        address = _valid_address(getattr(user, "email", ""))
        if address and user.pk not in muted and address.lower() not in addressed:
            queue_email(address, message, user)
    for raw in emails:
        address = _valid_address(raw)
        if address and address.lower() not in addressed:
            bare = {**common, "recipient": None, "recipient_name": "", "preferences_url": ""}
            queue_email(address, render_message(declared.name, bare), None)

    with transaction.atomic():
        Notification.objects.bulk_create(notifications)
        created = OutboundEmail.objects.bulk_create(outbox)
        if created:
            transaction.on_commit(partial(_enqueue_deliveries, [email.pk for email in created]))


def _enqueue_deliveries(email_ids: list[int]) -> None:
    """Queue one delivery task per email. A broker that is down loses nothing: the rows stay
    pending and the every-minute requeue picks them up."""
    from notifications.tasks import deliver_email

    for email_id in email_ids:
        try:
            deliver_email.delay(email_id)
        except Exception:
            logger.exception("Could not queue email %s; the periodic requeue will retry it", email_id)
            return


# --- Delivery -----------------------------------------------------------------------------------


def _is_permanent(error: Exception) -> bool:
    """A refusal the SMTP server will repeat (5xx), or a message Django cannot build."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code >= 500 and not isinstance(error, smtplib.SMTPAuthenticationError)
    return isinstance(error, ValueError)


def retry_delay_seconds(attempts: int) -> int:
    """Exponential backoff after the `attempts`-th failed attempt: base, 2x base, 4x base ... capped."""
    delay = settings.EMAIL_RETRY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0)
    return min(delay, settings.EMAIL_RETRY_BACKOFF_MAX_SECONDS)


def _send(email: OutboundEmail) -> None:
    message = EmailMultiAlternatives(
        subject=email.subject,
        body=email.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[email.to],
        headers={"Auto-Submitted": "auto-generated", "X-PRM-Kind": email.kind},
        connection=get_connection(fail_silently=False),
    )
    if email.html:
        message.attach_alternative(email.html, "text/html")
    message.send()


class RecipientDeactivated(Exception):
    """A user's mail is not sent once the user can no longer log in (a deactivated partner user)."""


def email_deliver(*, email_id: int) -> str:
    """Send one pending email; returns its status afterwards, or "skipped" when there was nothing to do.

    The row is claimed with SELECT ... FOR UPDATE SKIP LOCKED and sent while the claim is held, so
    two deliveries of one email never both send it: the second finds it locked or no longer pending.
    (SQLite runs write transactions one at a time, which gives the same guarantee.) A temporary
    SMTP failure records the error and raises DeliveryDeferred with the backoff; after
    EMAIL_MAX_ATTEMPTS attempts, or on a permanent refusal, the email is marked failed.
    """
    retry_in = None
    with transaction.atomic():
        email = (
            OutboundEmail.objects.select_for_update(skip_locked=True)
            .filter(pk=email_id, status=OutboundEmail.Status.PENDING)
            .first()
        )
        if email is None:
            return "skipped"
        email.attempts += 1
        try:
            if email.user is not None and not email.user.is_active:
                raise RecipientDeactivated("the recipient's login was deactivated before the mail went out")
            _send(email)
        except RecipientDeactivated as exc:
            email.status, email.last_error = OutboundEmail.Status.FAILED, str(exc)
        except Exception as exc:  # every failure is recorded on the row; none is lost in a log only
            email.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if _is_permanent(exc) or email.attempts >= settings.EMAIL_MAX_ATTEMPTS:
                email.status = OutboundEmail.Status.FAILED
                logger.warning("Email %s to %s failed for good: %s", email.pk, email.to, email.last_error)
            else:
                retry_in = retry_delay_seconds(email.attempts)
                email.next_attempt_at = timezone.now() + timedelta(seconds=retry_in)
        else:
            email.status = OutboundEmail.Status.SENT
            email.sent_at = timezone.now()
            email.last_error = ""
        declared = KINDS.get(email.kind)
        if email.status != OutboundEmail.Status.PENDING and declared is not None and declared.secret:
            # Its link must not outlive the delivery in the database; subject, recipient and status stay.
            email.text = email.html = ""
        email.save(
            update_fields=["attempts", "status", "sent_at", "last_error", "next_attempt_at", "text", "html"]
        )
    if retry_in is not None:
        raise DeliveryDeferred(email.pk, retry_in, email.last_error)
    return email.status


def emails_requeue_overdue(*, now: datetime | None = None) -> int:
    """Queue again the pending emails whose attempt is overdue by a minute (their task was lost).

    Each is given a fresh minute before it counts as overdue again. Returns how many were queued.
    """
    now = now or timezone.now()
    with transaction.atomic():
        overdue = list(
            OutboundEmail.objects.select_for_update(skip_locked=True)
            .filter(status=OutboundEmail.Status.PENDING, next_attempt_at__lte=now - OVERDUE_AFTER)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:REQUEUE_BATCH]
        )
        OutboundEmail.objects.filter(pk__in=overdue).update(next_attempt_at=now)
        if overdue:
            transaction.on_commit(partial(_enqueue_deliveries, overdue))
    return len(overdue)


def emails_retry_failed(*, email_ids: Iterable[int]) -> int:
    """Give failed emails a fresh set of attempts (an operator fixed the cause); queued after commit.

    A failed email of a secret kind has no body left to send: it is not retried (its reader asks again).
    """
    with transaction.atomic():
        failed = list(
            OutboundEmail.objects.select_for_update()
            .filter(pk__in=list(email_ids), status=OutboundEmail.Status.FAILED)
            .exclude(text="", html="")
            .values_list("pk", flat=True)
        )
        OutboundEmail.objects.filter(pk__in=failed).update(
            status=OutboundEmail.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
        )
        if failed:
            transaction.on_commit(partial(_enqueue_deliveries, failed))
    return len(failed)


# --- Inbox and preferences ----------------------------------------------------------------------


def notifications_mark_all_read(*, user: User) -> int:
    return Notification.objects.filter(user_id=user.pk, read_at__isnull=True).update(read_at=timezone.now())


def notification_preferences_set(*, user: User, email_enabled: dict[str, bool]) -> None:
    """Store the user's email choice for each kind named; kinds nobody may turn off are ignored."""
    unknown = sorted(set(email_enabled) - set(KINDS))
    if unknown:
        raise ValidationError({"kind": [f"unknown notification kind {name!r}" for name in unknown]})
    with transaction.atomic():
        for name, enabled in email_enabled.items():
            kind: Kind = KINDS[name]
            if not kind.optional:
                continue
            NotificationPreference.objects.update_or_create(
                user_id=user.pk, kind=name, defaults={"email_enabled": bool(enabled)}
            )
