"""The webhooks pages: partner managers register endpoints, read the delivery log, send a test
event, replay a delivery and disable or enable an endpoint; nobody else may."""

import pytest
from django.urls import reverse

from integrations.models import WebhookDelivery, WebhookEndpoint
from integrations.services import delivery_attempt
from partners.roles import StaffRole
from tests.factories import PartnerUserFactory, StaffUserFactory
from tests.webhooks import Receiver

pytestmark = pytest.mark.django_db
LIST = reverse("dashboards:webhooks")


@pytest.fixture
def manager_client(client):
    client.force_login(StaffUserFactory(username="hooks-pm"))
    return client


def test_a_manager_registers_an_endpoint_and_sees_its_secret(manager_client):
    response = manager_client.post(
        LIST, {"url": "https://crm.example.com/hooks", "event_types": ["deal.won", "deal.lost"]}
    )
    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/dashboard/webhooks/{endpoint.pk}/"
    page = manager_client.get(response["Location"]).content.decode()
    assert endpoint.secret in page and "deal.won, deal.lost" in page
    assert endpoint.owner.username == "hooks-pm"
    assert "https://crm.example.com/hooks" in manager_client.get(LIST).content.decode()


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"url": "http://192.168.1.10/", "event_types": ["deal.won"]}, "must not point at a private address"),
        ({"url": "file:///etc/passwd", "event_types": ["deal.won"]}, "must start with http:// or https://"),
        ({"url": "https://crm.example.com/", "event_types": ["nope"]}, "Select a valid choice"),
        ({"url": "https://crm.example.com/"}, "This field is required"),
    ],
)
def test_bad_endpoints_are_form_errors(manager_client, form, message):
    response = manager_client.post(LIST, form)
    assert response.status_code == 200 and message in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_test_event_delivery_log_replay_and_disable(manager_client):
    with Receiver() as receiver:
        manager_client.post(LIST, {"url": receiver.url, "event_types": ["deal.won"]})
        endpoint = WebhookEndpoint.objects.get()
        detail = reverse("dashboards:webhook_detail", args=[endpoint.pk])
        assert manager_client.post(detail, {"action": "test"}).status_code == 302
        delivery = WebhookDelivery.objects.get()
        assert delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        page = manager_client.get(detail).content.decode()
        assert "webhook.test" in page and "#1" in page and "200" in page and "{&quot;ok&quot;: true}" in page
        manager_client.post(detail, {"action": "replay", "delivery": str(delivery.pk)})
        delivery.refresh_from_db()
        assert delivery.status == "pending"
        assert manager_client.post(detail, {"action": "replay", "delivery": "x"}).status_code == 404
    manager_client.post(detail, {"action": "disable"})
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.disabled_reason == "disabled by hand"
    manager_client.post(detail, {"action": "enable"})
    endpoint.refresh_from_db()
    assert endpoint.is_active
    old = endpoint.secret
    manager_client.post(detail, {"action": "rotate"})
    endpoint.refresh_from_db()
    assert endpoint.secret != old


def test_sales_ops_and_partner_users_may_not_manage_webhooks(client):
    client.force_login(StaffUserFactory(username="ops", role=StaffRole.SALES_OPS))
    assert client.get(LIST).status_code == 403
    client.force_login(PartnerUserFactory().user)
    assert client.get(LIST).status_code == 403
    client.logout()
    assert client.get(LIST).status_code == 302
