"""Webhook writes: endpoints, the deliveries each event creates (in its transaction), delivery
with retries, the requeue of lost deliveries, replay and test events.

Delivery is at least once: an attempt is leased in a short transaction, POSTed outside any
transaction (no lock or open transaction while waiting on a receiver), then recorded. A worker
that dies mid-attempt leaves the lease to expire and `deliveries_requeue_overdue` sends the
delivery again, with the same event id, so a receiver drops the duplicate. docs/integrations.md.
"""

import logging
import random
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from events.models import Event
from events.services import record_event
from events.types import SUBSCRIBABLE, EventType
from integrations import signing, targets
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from integrations.payloads import event_bytes
from notifications.services import notify

logger = logging.getLogger(__name__)
REQUEUE_BATCH = 500
USER_AGENT = "PRM-Webhooks/1"


class DeliveryDeferred(Exception):
    """The attempt failed and the delivery is retried in `seconds`."""

    def __init__(self, delivery_id: int, seconds: float, error: str) -> None:
        super().__init__(f"webhook delivery {delivery_id}: retry in {seconds:.0f}s after {error}")
        self.seconds = seconds


# --- Endpoints ----------------------------------------------------------------------------------


def _endpoint_errors(*, url: str | None, event_types: Iterable[str] | None) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if url is not None:
        if not url:
            errors["url"] = ["is required"]
        elif len(url) > 500:
            errors["url"] = ["must be at most 500 characters"]
        elif messages := targets.url_errors(url):
            errors["url"] = messages
    if event_types is not None:
        unknown = sorted({str(t) for t in event_types} - set(SUBSCRIBABLE))
        if unknown:
            errors["event_types"] = [f"unknown event type {name!r}" for name in unknown]
        elif not event_types:
            errors["event_types"] = ["choose at least one event type"]
    return errors


def endpoint_create(
    *, url: str, event_types: Iterable[str], owner: User | None, description: str = ""
) -> WebhookEndpoint:
    """Register an endpoint with a new secret (whose owner is told when it gets disabled)."""
    url = (url or "").strip()
    event_types = list(dict.fromkeys(event_types or []))
    if errors := _endpoint_errors(url=url, event_types=event_types):
        raise ValidationError(errors)
    return WebhookEndpoint.objects.create(
        url=url,
        event_types=event_types,
        owner=owner,
        description=(description or "").strip()[:200],
        secret=signing.new_secret(),
    )


def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: Iterable[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> WebhookEndpoint:
    """Change what was given; re-enabling clears the disable and its failure count."""
    url = url.strip() if url is not None else None
    event_types = list(dict.fromkeys(event_types)) if event_types is not None else None
    if errors := _endpoint_errors(url=url, event_types=event_types):
        raise ValidationError(errors)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if url is not None:
            endpoint.url = url
        if event_types is not None:
            endpoint.event_types = event_types
        if description is not None:
            endpoint.description = description.strip()[:200]
        if is_active is True and not endpoint.is_active:
            endpoint.is_active, endpoint.disabled_at, endpoint.disabled_reason = True, None, ""
            endpoint.consecutive_failures = 0
        elif is_active is False and endpoint.is_active:
            _disable(endpoint, "disabled by hand")
        endpoint.save()
    return endpoint


def _disable(endpoint: WebhookEndpoint, reason: str) -> None:
    """Mark the endpoint disabled and give up its pending deliveries (replay sends one again)."""
    endpoint.is_active = False
    endpoint.disabled_at = timezone.now()
    endpoint.disabled_reason = reason[:500]
    WebhookDelivery.objects.filter(endpoint=endpoint, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, leased_until=None, last_error="the endpoint was disabled"
    )


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    endpoint.secret = signing.new_secret()
    endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint


# --- Deliveries: created with the event, queued after commit ------------------------------------


def deliveries_for_event(event: Event) -> None:
    """events' consumer: one pending delivery per active endpoint subscribed to the event's type,
    written in the event's transaction; each is queued once that transaction commits."""
    if event.type == EventType.WEBHOOK_TEST:
        return
    endpoints = [e for e in WebhookEndpoint.objects.filter(is_active=True) if event.type in e.event_types]
    _create_deliveries(event, endpoints)


def _create_deliveries(event: Event, endpoints: list[WebhookEndpoint]) -> list[WebhookDelivery]:
    if not endpoints:
        return []
    now = timezone.now()
    created = WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(endpoint=e, event=event, created_at=now, next_attempt_at=now) for e in endpoints]
    )
    if any(d.pk is None for d in created):  # a backend that returns no ids from bulk_create
        created = list(WebhookDelivery.objects.filter(event=event, endpoint__in=endpoints))
    transaction.on_commit(partial(enqueue, [d.pk for d in created]))
    return created


def enqueue(delivery_ids: list[int], countdown: float | None = None) -> None:
    """Queue a delivery task for each; a broker that is down loses nothing (the requeue finds them)."""
    from integrations.tasks import deliver_webhook

    options: dict[str, Any] = {"queue": settings.WEBHOOK_QUEUE} if settings.WEBHOOK_QUEUE else {}
    if countdown is not None:
        options["countdown"] = countdown
    for delivery_id in delivery_ids:
        try:
            deliver_webhook.apply_async((delivery_id,), **options)
        except Exception:
            logger.exception("Could not queue webhook delivery %s; the requeue will send it", delivery_id)
            return


def endpoint_send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event delivered to this endpoint only (even a disabled one)."""
    with transaction.atomic():
        event = record_event(type=EventType.WEBHOOK_TEST, obj=endpoint, after={"url": endpoint.url})
        (delivery,) = _create_deliveries(event, [endpoint])
    return delivery


def delivery_replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again (same event id) with a fresh retry window."""
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        if delivery.status == WebhookDelivery.Status.PENDING and delivery.leased_until:
            raise ValidationError({"delivery": ["an attempt is in flight; wait for it"]})
        now = timezone.now()
        delivery.status = WebhookDelivery.Status.PENDING
        delivery.created_at = delivery.next_attempt_at = now
        delivery.leased_until = None
        delivery.save(update_fields=["status", "created_at", "next_attempt_at", "leased_until"])
        transaction.on_commit(partial(enqueue, [delivery.pk]))
    return delivery


# --- One attempt --------------------------------------------------------------------------------


def retry_delay_seconds(attempts: int) -> float:
    """Exponential backoff after the `attempts`-th failure, capped, with jitter (x0.5 to x1.5)."""
    delay = min(
        settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), settings.WEBHOOK_RETRY_MAX_SECONDS
    )
    return delay * random.uniform(0.5, 1.5)


def lease_seconds() -> int:
    return settings.WEBHOOK_LEASE_SECONDS or 2 * settings.WEBHOOK_TIMEOUT_SECONDS + 30


def _claim(delivery_id: int, now: datetime) -> WebhookDelivery | None:
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .select_related("endpoint", "event")
            .filter(
                pk=delivery_id,
                status=WebhookDelivery.Status.PENDING,
                next_attempt_at__lte=now + timedelta(seconds=2),
            )
            .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts += 1
        delivery.leased_until = now + timedelta(seconds=lease_seconds())
        delivery.last_attempt_at = now
        delivery.save(update_fields=["attempts", "leased_until", "last_attempt_at"])
    return delivery


def _post(delivery: WebhookDelivery) -> WebhookAttempt:
    """POST the event to the endpoint's checked address; never raises (the attempt says what failed)."""
    attempt = WebhookAttempt(delivery=delivery, number=delivery.attempts, started_at=timezone.now())
    body = event_bytes(delivery.event)
    started = time.monotonic()
    try:
        target = targets.resolve(delivery.endpoint.url)
        url = httpx.URL(target.url)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Host": url.netloc.decode("ascii"),
            "PRM-Event-Id": str(delivery.event.uuid),
            "PRM-Event-Type": delivery.event.type,
            "PRM-Delivery-Attempt": str(delivery.attempts),
            signing.SIGNATURE_HEADER: signing.signature_header(delivery.endpoint.secret, body),
        }
        extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
        with (
            httpx.Client(
                timeout=settings.WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False, trust_env=False
            ) as client,
            client.stream(
                "POST",
                url.copy_with(host=target.address),
                content=body,
                headers=headers,
                extensions=extensions,
            ) as response,
        ):
            excerpt = b""
            for chunk in response.iter_bytes():
                excerpt += chunk
                if len(excerpt) >= settings.WEBHOOK_RESPONSE_EXCERPT:
                    break
        attempt.status_code = response.status_code
        attempt.response_excerpt = excerpt[: settings.WEBHOOK_RESPONSE_EXCERPT].decode("utf-8", "replace")
        attempt.succeeded = 200 <= response.status_code < 300
        if not attempt.succeeded:
            attempt.error = f"answered {response.status_code}"
    except targets.TargetRefused as exc:
        attempt.error = f"refused target: {exc}"
    except httpx.TimeoutException as exc:
        attempt.error = f"timed out after {settings.WEBHOOK_TIMEOUT_SECONDS}s ({type(exc).__name__})"
    except Exception as exc:  # anything else (connection, protocol, a URL httpx refuses) is logged
        attempt.error = f"{type(exc).__name__}: {exc}"[:2000]
    attempt.latency_ms = round((time.monotonic() - started) * 1000)
    return attempt


def delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> str:
    """Make one attempt of a due delivery; returns its status after it, or "skipped".

    A failure raises DeliveryDeferred with the backoff while the retry window (24 hours from the
    delivery's creation) lasts; after it the delivery fails, and an endpoint with no success since
    that delivery was created is disabled and its owner told.
    """
    now = now or timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return "skipped"
    endpoint = delivery.endpoint
    if not endpoint.is_active and delivery.event.type != EventType.WEBHOOK_TEST:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.FAILED, leased_until=None, last_error="the endpoint was disabled"
        )
        return WebhookDelivery.Status.FAILED
    attempt = _post(delivery)
    finished = now + timedelta(milliseconds=attempt.latency_ms)
    retry_in = None
    with transaction.atomic():
        attempt.save()
        delivery.leased_until = None
        delivery.last_status_code = attempt.status_code
        delivery.last_error = attempt.error
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if attempt.succeeded:
            delivery.status = WebhookDelivery.Status.SUCCEEDED
            delivery.delivered_at = finished
            endpoint.last_success_at, endpoint.consecutive_failures = finished, 0
        else:
            endpoint.consecutive_failures = F("consecutive_failures") + 1
            window_ends = delivery.created_at + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS)
            if finished >= window_ends:
                delivery.status = WebhookDelivery.Status.FAILED
            else:
                retry_in = min(
                    retry_delay_seconds(delivery.attempts), (window_ends - finished).total_seconds()
                )
                delivery.next_attempt_at = finished + timedelta(seconds=retry_in)
        delivery.save(
            update_fields=[
                "status",
                "leased_until",
                "last_status_code",
                "last_error",
                "delivered_at",
                "next_attempt_at",
            ]
        )
        gave_up = delivery.status == WebhookDelivery.Status.FAILED
        if (
            gave_up
            and endpoint.is_active
            and (endpoint.last_success_at is None or endpoint.last_success_at < delivery.created_at)
        ):
            _disable_for_failures(endpoint, delivery, attempt)
        endpoint.save()
    if retry_in is not None:
        raise DeliveryDeferred(delivery.pk, retry_in, attempt.error)
    return delivery.status


def _disable_for_failures(
    endpoint: WebhookEndpoint, delivery: WebhookDelivery, attempt: WebhookAttempt
) -> None:
    hours = settings.WEBHOOK_RETRY_WINDOW_SECONDS / 3600
    reason = f"no successful delivery for {hours:g} hours; last attempt: {attempt.error}"
    _disable(endpoint, reason)
    logger.warning("Webhook endpoint %s (%s) disabled: %s", endpoint.pk, endpoint.url, reason)
    if endpoint.owner is not None:
        notify(
            kind="webhook_disabled",
            users=[endpoint.owner],
            context={"endpoint": endpoint, "reason": reason, "event_type": delivery.event.type},
            link=reverse("dashboards:webhook_detail", kwargs={"endpoint_id": endpoint.pk}),
        )


def deliveries_requeue_overdue(*, now: datetime | None = None) -> int:
    """Queue again the pending deliveries that are overdue by WEBHOOK_REQUEUE_SECONDS and not in
    flight (their task was lost, or their worker died and the lease expired). Returns how many."""
    now = now or timezone.now()
    overdue_before = now - timedelta(seconds=settings.WEBHOOK_REQUEUE_SECONDS)
    with transaction.atomic():
        overdue = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=WebhookDelivery.Status.PENDING)
            .filter(
                Q(leased_until__isnull=True, next_attempt_at__lte=overdue_before) | Q(leased_until__lt=now)
            )
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:REQUEUE_BATCH]
        )
        WebhookDelivery.objects.filter(pk__in=overdue).update(next_attempt_at=now, leased_until=None)
        if overdue:
            transaction.on_commit(partial(enqueue, overdue))
    return len(overdue)
