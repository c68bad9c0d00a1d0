"""A real Celery worker delivers webhooks to a real receiver on 127.0.0.1; killed with kill -9 in
the middle of a delivery, no event is lost: a new worker (with beat's requeue every second) sends
what was in flight and what was queued behind it, and the receiver drops the duplicate by event id.
"""

import os
import signal
import uuid
from datetime import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from deals import services as deals
from events.models import Event
from integrations import services, signing
from integrations.models import WebhookDelivery
from tests.factories import PartnerFactory, StaffUserFactory
from tests.test_celery_worker import celery_worker, wait_for
from tests.test_kpi_recovery_worker import Output, alive_in_group
from tests.webhooks import Receiver

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_killed_mid_delivery_loses_no_event_and_the_receiver_drops_the_duplicate(
    tmp_path, redis_url, settings
):
    queue = f"hooks-{uuid.uuid4().hex[:8]}"
    settings.WEBHOOK_QUEUE = queue  # where this process queues the deliveries
    env = {
        "REDIS_URL": redis_url,
        "WEBHOOK_QUEUE": queue,
        "WEBHOOK_ALLOW_LOOPBACK": "1",
        "WEBHOOK_TIMEOUT_SECONDS": "30",
        "WEBHOOK_LEASE_SECONDS": "3",
        "WEBHOOK_REQUEUE_SECONDS": "1",
    }
    manager = StaffUserFactory(username="hooks-owner")
    with Receiver(mode="hold") as receiver:
        endpoint = services.endpoint_create(
            url=receiver.url, event_types=["registration.approved", "deal.won"], owner=manager
        )
        registration = deals.registration_submit(
            partner=PartnerFactory(), account_name="Acme", domain="acme.example", amount=Decimal("500.00")
        )
        approved = deals.registration_approve(registration=registration, decided_by=manager)
        deals.deal_close(deal=approved.deal, status="won", closed_at=timezone.now())
        events = {str(e.uuid) for e in Event.objects.filter(type__in=["registration.approved", "deal.won"])}
        assert len(events) == 2 and WebhookDelivery.objects.filter(status="pending").count() == 2

        with celery_worker(tmp_path, queue, "--pool=solo", **env) as first:
            first_log = Output(first)
            wait_for(receiver.arrived.is_set, 60, "the first delivery to reach the receiver", first)
            # The receiver holds the request: the worker waits for the answer when it is killed.
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            wait_for(lambda: not alive_in_group(first.pid), 10, "every process of the worker to die")
        in_flight = WebhookDelivery.objects.get(event__uuid=receiver.requests[0].event_id)
        assert in_flight.status == "pending" and in_flight.attempts == 1 and in_flight.leased_until
        assert not in_flight.attempt_log.exists()  # the dead worker recorded nothing
        receiver.mode = "ok"
        receiver.release.set()  # the held request is processed now; its answer goes nowhere

        with celery_worker(
            tmp_path, queue, "--pool=solo", "--beat", f"--schedule={tmp_path / 'beat-schedule'}", **env
        ) as second:
            second_log = Output(second)
            wait_for(
                lambda: WebhookDelivery.objects.filter(status="succeeded").count() == 2,
                90,
                "both deliveries to succeed",
                second,
            )
    ids = [request.event_id for request in receiver.requests]
    assert set(ids) == events  # nothing lost
    assert len(ids) == 3 and ids.count(str(in_flight.event.uuid)) == 2
    assert receiver.processed == events and receiver.duplicates == 1  # dropped by event id
    for request in receiver.requests:
        assert signing.verify(endpoint.secret, request.headers["prm-signature"], request.body)
    in_flight.refresh_from_db()
    assert in_flight.attempts == 2 and in_flight.leased_until is None
    assert list(in_flight.attempt_log.values_list("number", "status_code")) == [(2, 200)]
    assert isinstance(in_flight.delivered_at, datetime)
    for log in (first_log, second_log):
        assert "Traceback" not in log, log.tail()
