"""The webhook endpoints of the API: managers only; register, log, test event, replay, re-enable."""

import pytest

from integrations import services
from integrations.models import WebhookDelivery, WebhookEndpoint
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of
from tests.webhooks import Receiver

pytestmark = pytest.mark.django_db


def test_a_manager_registers_an_endpoint_and_gets_its_secret(as_manager, manager):
    response = as_manager.post(
        f"{API}/webhooks/",
        {"url": "https://crm.example.com/hooks", "event_types": ["deal.won", "registration.approved"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    endpoint = WebhookEndpoint.objects.get()
    assert body["secret"] == endpoint.secret and body["secret"].startswith("whsec_")
    assert body["event_types"] == ["deal.won", "registration.approved"] and body["owner"] == manager.pk


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://10.0.0.5/hook", "event_types": ["deal.won"]}, "url"),
        ({"url": "gopher://crm.example.com/", "event_types": ["deal.won"]}, "url"),
        ({"url": "https://crm.example.com/", "event_types": ["deal.maybe"]}, "event_types.0"),
        ({"url": "https://crm.example.com/", "event_types": []}, "event_types"),
    ],
)
def test_bad_endpoints_are_refused_with_the_field(as_manager, settings, body, field):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    response = as_manager.post(f"{API}/webhooks/", body, format="json")
    assert response.status_code == 400
    assert field in error_of(response)["fields"]


def test_only_partner_managers_see_or_manage_webhooks(as_salesops, as_admin_a, anonymous, manager):
    endpoint = services.endpoint_create(
        url="https://crm.example.com/h", event_types=["deal.won"], owner=manager
    )
    for client in (as_salesops, as_admin_a):
        assert client.get(f"{API}/webhooks/").status_code == 403
        assert client.get(f"{API}/webhooks/{endpoint.pk}/").status_code == 403
        assert client.post(f"{API}/webhooks/{endpoint.pk}/test/").status_code == 403
    assert anonymous.get(f"{API}/webhooks/").status_code == 401


def test_test_event_log_replay_and_re_enable_through_the_api(as_manager, manager):
    with Receiver() as receiver:
        endpoint = services.endpoint_create(url=receiver.url, event_types=["deal.won"], owner=manager)
        queued = as_manager.post(f"{API}/webhooks/{endpoint.pk}/test/")
        assert queued.status_code == 202 and queued.json()["event_type"] == "webhook.test"
        delivery = WebhookDelivery.objects.get()
        assert services.delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        log = as_manager.get(f"{API}/webhooks/{endpoint.pk}/deliveries/").json()["results"]
        assert [(d["status"], d["attempts"]) for d in log] == [("succeeded", 1)]
        (attempt,) = log[0]["attempt_log"]
        assert attempt["status_code"] == 200 and attempt["response_excerpt"] == '{"ok": true}'
        replay = as_manager.post(f"{API}/webhooks/{endpoint.pk}/deliveries/{delivery.pk}/replay/")
        assert replay.status_code == 202 and replay.json()["status"] == "pending"
        assert services.delivery_attempt(delivery_id=delivery.pk) == "succeeded"
    assert [r.event_id for r in receiver.requests] == [str(delivery.event.uuid)] * 2
    services.endpoint_update(endpoint=endpoint, is_active=False)
    response = as_manager.patch(f"{API}/webhooks/{endpoint.pk}/", {"is_active": True}, format="json")
    assert response.status_code == 200 and response.json()["is_active"] is True
    assert as_manager.post(f"{API}/webhooks/{endpoint.pk}/deliveries/999999/replay/").status_code == 404
