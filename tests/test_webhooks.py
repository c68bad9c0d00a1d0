"""Signed webhooks to a real receiver on 127.0.0.1: the outbox, signatures, retries with backoff,
the disable after the retry window (and the owner's notification), replay and test events, and
the SSRF guard."""

import json
import socket
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from deals import services as deals
from events.models import Event
from integrations import services, signing, targets
from integrations.models import WebhookDelivery, WebhookEndpoint
from kpis.services import kpi_run_create, kpi_run_execute
from notifications.models import Notification
from tests.factories import PartnerFactory, StaffUserFactory
from tests.support.services import require
from tests.webhooks import Receiver, down_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager():
    return StaffUserFactory(username="hooks-manager", email="hooks@example.com")


def endpoint_for(url: str, owner, *types: str) -> WebhookEndpoint:
    return services.endpoint_create(url=url, event_types=types or ["registration.approved"], owner=owner)


def submitted(partner=None, domain="acme.example"):
    return deals.registration_submit(
        partner=partner or PartnerFactory(name="Northwind"),
        account_name="Acme Corp",
        domain=domain,
        amount=Decimal("18000.00"),
    )


def test_an_approval_reaches_the_receiver_once_signed_with_the_endpoint_secret(
    manager, eager_tasks, django_capture_on_commit_callbacks
):
    with Receiver() as receiver:
        endpoint = endpoint_for(receiver.url, manager, "registration.approved", "deal.won")
        registration = submitted()
        with django_capture_on_commit_callbacks(execute=True):
            deals.registration_approve(registration=registration, decided_by=manager)
    (request,) = receiver.requests
    event = Event.objects.get(type="registration.approved")
    assert signing.verify(endpoint.secret, request.headers["prm-signature"], request.body)
    assert not signing.verify("whsec_other", request.headers["prm-signature"], request.body)
    assert not signing.verify(endpoint.secret, request.headers["prm-signature"], request.body + b" ")
    body = request.json
    assert set(body) == {"id", "type", "time", "data"}
    assert body["id"] == str(event.uuid) == request.headers["prm-event-id"]
    assert body["type"] == "registration.approved"
    assert body["data"]["object"] == {"type": "registration", "id": registration.pk}
    assert body["data"]["before"] == {"status": "submitted"}
    assert body["data"]["after"]["status"] == "approved"
    assert body["data"]["after"]["amount"] == "18000.00"
    assert body["data"]["actor"] == "system" and body["data"]["channel"] == "system"
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    (attempt,) = delivery.attempt_log.all()
    assert attempt.succeeded and attempt.status_code == 200 and attempt.response_excerpt == '{"ok": true}'
    assert attempt.latency_ms >= 0


def test_only_subscribed_types_and_active_endpoints_get_deliveries(manager):
    won = endpoint_for("https://crm.example.com/a", manager, "deal.won")
    approved = endpoint_for("https://crm.example.com/b", manager, "registration.approved")
    off = endpoint_for("https://crm.example.com/c", manager, "registration.approved")
    services.endpoint_update(endpoint=off, is_active=False)
    deals.registration_approve(registration=submitted(), decided_by=manager)
    assert list(WebhookDelivery.objects.values_list("endpoint", flat=True)) == [approved.pk]
    assert not WebhookDelivery.objects.filter(endpoint__in=[won, off]).exists()


def test_a_change_that_rolls_back_leaves_no_event_and_no_delivery(manager):
    endpoint_for("https://crm.example.com/a", manager, "registration.submitted")
    with pytest.raises(RuntimeError), transaction.atomic():
        submitted()
        assert Event.objects.count() == 1 and WebhookDelivery.objects.count() == 1
        raise RuntimeError("rolled back")
    assert Event.objects.count() == 0 and WebhookDelivery.objects.count() == 0


def run_until_done(delivery: WebhookDelivery, settings) -> list:
    """Attempt the delivery at each time it is due until it succeeds or fails; the delays."""
    delays = []
    now = delivery.next_attempt_at
    for _ in range(50):
        try:
            services.delivery_attempt(delivery_id=delivery.pk, now=now)
        except services.DeliveryDeferred as deferred:
            delays.append(deferred.seconds)
        delivery.refresh_from_db()
        if delivery.status != "pending":
            return delays
        now = delivery.next_attempt_at
    pytest.fail("the delivery never ended")


@pytest.mark.parametrize("mode", ["fail", "down", "slow"])
def test_a_receiver_that_keeps_failing_gets_retries_with_backoff_then_the_endpoint_is_disabled(
    mode, manager, settings
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    settings.WEBHOOK_RETRY_BASE_SECONDS = 3600
    settings.WEBHOOK_RETRY_MAX_SECONDS = 4 * 3600
    settings.WEBHOOK_RETRY_WINDOW_SECONDS = 6 * 3600
    with Receiver(mode="slow" if mode == "slow" else "fail", delay=2) as receiver:
        url = down_url() if mode == "down" else receiver.url
        endpoint = endpoint_for(url, manager)
        deals.registration_approve(registration=submitted(), decided_by=manager)
        delivery = WebhookDelivery.objects.get()
        delays = run_until_done(delivery, settings)
    delivery.refresh_from_db()
    endpoint.refresh_from_db()
    attempts = list(delivery.attempt_log.order_by("number"))
    assert delivery.status == "failed" and delivery.attempts == len(attempts) >= 3
    # Exponential backoff with jitter: the n-th delay is 1 h x 2^(n-1) x [0.5, 1.5], cut at the window.
    for n, delay in enumerate(delays[:-1], start=1):
        assert 0.5 * 3600 * 2 ** (n - 1) <= delay <= 1.5 * 3600 * 2 ** (n - 1)
    last = attempts[-1]
    assert last.started_at - delivery.created_at <= timedelta(hours=6)
    if mode == "fail":
        assert len(receiver.requests) == len(attempts)
        assert {a.status_code for a in attempts} == {500}
        assert last.response_excerpt == "Internal error: the database is down"
    elif mode == "down":
        assert receiver.requests == [] and "ConnectError" in last.error
    else:
        assert "timed out after 1s" in last.error and 900 <= last.latency_ms < 1900
    assert not endpoint.is_active and endpoint.consecutive_failures == len(attempts)
    assert "no successful delivery for 6 hours" in endpoint.disabled_reason
    (notice,) = Notification.objects.filter(kind="webhook_disabled")
    assert notice.user == manager and url in notice.title and f"/webhooks/{endpoint.pk}/" in notice.link
    # Later events are not delivered to the disabled endpoint.
    deals.registration_approve(registration=submitted(domain="globex.example"), decided_by=manager)
    assert WebhookDelivery.objects.count() == 1


def test_a_success_within_the_window_keeps_the_endpoint_enabled(manager, settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 60
    with Receiver(mode="fail") as receiver:
        endpoint_for(receiver.url, manager)
        deals.registration_approve(registration=submitted(), decided_by=manager)
        delivery = WebhookDelivery.objects.get()
        with pytest.raises(services.DeliveryDeferred):
            services.delivery_attempt(delivery_id=delivery.pk)
        receiver.mode = "ok"
        delivery.refresh_from_db()
        assert services.delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at) == "succeeded"
        # A second call for the same delivery (a duplicate task) sends nothing.
        assert services.delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at) == "skipped"
    assert len(receiver.requests) == 2
    assert receiver.requests[0].event_id == receiver.requests[1].event_id
    assert receiver.requests[1].headers["prm-delivery-attempt"] == "2"
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.is_active and endpoint.consecutive_failures == 0


def test_replay_sends_the_same_event_again_and_a_test_event_reaches_one_endpoint(manager):
    with Receiver() as receiver:
        endpoint = endpoint_for(receiver.url, manager)
        other = endpoint_for("https://crm.example.com/other", manager)
        deals.registration_approve(registration=submitted(), decided_by=manager)
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert services.delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        services.delivery_replay(delivery=delivery)
        assert services.delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        test_delivery = services.endpoint_send_test(endpoint=endpoint)
        assert services.delivery_attempt(delivery_id=test_delivery.pk) == "succeeded"
    first, replayed, test = receiver.requests
    assert first.body == replayed.body and replayed.headers["prm-delivery-attempt"] == "2"
    assert test.json["type"] == "webhook.test" and test.json["data"]["after"] == {"url": endpoint.url}
    assert not WebhookDelivery.objects.filter(endpoint=other, event__type="webhook.test").exists()
    assert delivery.attempt_log.count() == 2


def test_the_lease_of_a_dead_attempt_expires_and_the_requeue_sends_it_again(manager, settings):
    settings.WEBHOOK_LEASE_SECONDS = 30
    endpoint_for("https://crm.example.com/a", manager)
    deals.registration_approve(registration=submitted(), decided_by=manager)
    delivery = WebhookDelivery.objects.get()
    now = delivery.next_attempt_at
    claimed = services._claim(delivery.pk, now)  # an attempt whose worker then dies
    assert claimed is not None and claimed.attempts == 1
    assert services._claim(delivery.pk, now) is None  # leased: nobody else sends it meanwhile
    assert services.deliveries_requeue_overdue(now=now + timedelta(seconds=10)) == 0
    assert services.deliveries_requeue_overdue(now=now + timedelta(seconds=31)) == 1
    delivery.refresh_from_db()
    assert delivery.leased_until is None and delivery.status == "pending"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://crm.example.com/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8000/",
        "http://127.0.0.1:8000/",
        "http://localhost/",
        "http://user:pw@crm.example.com/",
        "http://0.0.0.0/",
        "http://[::ffff:10.0.0.1]/",
        "http://exa mple.com/",
        "http://a..b/",
        "http://crm.example.com:99999/",
    ],
)
def test_private_loopback_and_odd_urls_are_refused_in_production(url, settings, manager):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    assert targets.url_errors(url)
    with pytest.raises(Exception) as info:
        services.endpoint_create(url=url, event_types=["deal.won"], owner=manager)
    assert "url" in info.value.message_dict


def test_a_name_that_resolves_to_a_non_public_address_is_refused_at_delivery(settings, manager):
    # This machine's own name: not "localhost" (refused by its spelling), it resolves to this machine.
    host = socket.gethostname()
    try:
        socket.getaddrinfo(host, 80)
        resolves = True
    except OSError:
        resolves = False
    require(resolves, f"this machine's name {host!r} does not resolve")
    endpoint = endpoint_for(f"http://{host}:9/hook", manager)
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    deals.registration_approve(registration=submitted(), decided_by=manager)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    with pytest.raises(services.DeliveryDeferred):
        services.delivery_attempt(delivery_id=delivery.pk)
    (attempt,) = delivery.attempt_log.all()
    assert attempt.error.startswith(f"refused target: {host} resolves to a "), attempt.error
    assert attempt.status_code is None


def test_the_signature_covers_the_timestamp():
    body = json.dumps({"id": "x"}).encode()
    header = signing.signature_header("whsec_k", body, timestamp=1_700_000_000)
    assert signing.verify("whsec_k", header, body, now=1_700_000_100)
    assert not signing.verify("whsec_k", header, body, now=1_700_000_000 + 301)
    forged = header.replace("t=1700000000", "t=1700000100")
    assert not signing.verify("whsec_k", forged, body, now=1_700_000_100)


def test_a_published_kpi_run_records_its_event_with_the_run(manager):
    endpoint = endpoint_for("https://crm.example.com/kpis", manager, "kpi_run.published")
    run, _ = kpi_run_create(trigger="manual")
    assert kpi_run_execute(run_id=run.pk).status == "succeeded"
    event = Event.objects.get(type="kpi_run.published")
    assert event.object_type == "kpis.kpirun" and event.object_id == str(run.pk)
    assert event.after["status"] == "succeeded" and event.after["trigger"] == "manual"
    assert WebhookDelivery.objects.get().endpoint == endpoint
