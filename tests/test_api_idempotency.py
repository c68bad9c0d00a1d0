"""Idempotency-Key on every POST: a retry replays the first answer and runs nothing twice; the same
key with another body is refused (422); keys are per token; a server error keeps no answer."""

import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from api.idempotency import IdempotentPostMixin
from api.models import IdempotencyKey
from api.services import api_token_create
from deals.models import Account
from integrations.models import WebhookEndpoint
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of

pytestmark = pytest.mark.django_db


def bearer(user, name: str) -> APIClient:
    _, secret = api_token_create(user=user, name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_a_retried_post_replays_the_first_answer_and_writes_once(manager):
    client = bearer(manager, "crm")
    body = {"name": "Initech", "domain": "initech.example"}
    first = client.post(f"{API}/accounts/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post(f"{API}/accounts/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert Account.objects.filter(domain="initech.example").count() == 1


def test_a_replay_does_not_run_the_service_again(manager):
    client = bearer(manager, "crm")
    body = {"url": "https://crm.example.com/h", "event_types": ["deal.won"]}
    for _ in range(3):
        assert (
            client.post(f"{API}/webhooks/", body, format="json", HTTP_IDEMPOTENCY_KEY="hook").status_code
            == 201
        )
    assert WebhookEndpoint.objects.count() == 1  # without the key each POST creates one
    client.post(f"{API}/webhooks/", body, format="json")
    assert WebhookEndpoint.objects.count() == 2


def test_the_same_key_with_another_body_or_path_is_a_422(manager):
    client = bearer(manager, "crm")
    client.post(
        f"{API}/accounts/", {"name": "A", "domain": "a.example"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    other = client.post(
        f"{API}/accounts/", {"name": "B", "domain": "b.example"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert other.status_code == 422 and error_of(other)["code"] == "idempotency_key_reused"
    elsewhere = client.post(
        f"{API}/webhooks/",
        {"url": "https://crm.example.com/h", "event_types": ["deal.won"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert elsewhere.status_code == 422
    assert not Account.objects.filter(domain="b.example").exists() and not WebhookEndpoint.objects.exists()


def test_keys_are_per_token(manager):
    body = {"name": "Initech", "domain": "initech.example"}
    one, two = bearer(manager, "one"), bearer(manager, "two")
    assert one.post(f"{API}/accounts/", body, format="json", HTTP_IDEMPOTENCY_KEY="same").status_code == 201
    other = two.post(
        f"{API}/accounts/", {"name": "X", "domain": "x.example"}, format="json", HTTP_IDEMPOTENCY_KEY="same"
    )
    assert other.status_code == 201  # another token's key of the same name is another key
    assert IdempotencyKey.objects.filter(key="same").count() == 2


def test_a_refused_request_is_replayed_as_refused(manager):
    client = bearer(manager, "crm")
    body = {"name": "", "domain": ""}
    first = client.post(f"{API}/accounts/", body, format="json", HTTP_IDEMPOTENCY_KEY="bad")
    again = client.post(f"{API}/accounts/", body, format="json", HTTP_IDEMPOTENCY_KEY="bad")
    assert first.status_code == again.status_code == 400 and again.json() == first.json()


@pytest.mark.parametrize("key", ["", "a b", "é", "x" * 256, "tab\there"])
def test_a_malformed_key_is_a_400(manager, key):
    client = bearer(manager, "crm")
    response = client.post(
        f"{API}/accounts/", {"name": "A", "domain": "a.example"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert response.status_code == 400 and "Idempotency-Key" in error_of(response)["fields"]
    assert not Account.objects.exists()


def test_a_new_tokens_secret_is_never_stored_for_a_replay(manager):
    client = APIClient()
    client.force_login(manager)
    first = client.post(f"{API}/auth/tokens/", {"name": "ci"}, format="json", HTTP_IDEMPOTENCY_KEY="t")
    again = client.post(f"{API}/auth/tokens/", {"name": "ci"}, format="json", HTTP_IDEMPOTENCY_KEY="t")
    assert first.status_code == again.status_code == 201
    assert "secret" in first.json() and "secret" not in again.json()
    assert again.json()["id"] == first.json()["id"]
    stored = bytes(IdempotencyKey.objects.get(key="t").body)
    assert first.json()["secret"].encode() not in stored


def _post_views(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _post_views(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            callback = pattern.callback
            cls = getattr(callback, "cls", None)
            actions = getattr(callback, "actions", None) or {}
            if cls is not None and cls.__name__ == "not_found":  # any path, any method: always 404
                continue
            if cls is not None and ("post" in actions or (not actions and hasattr(cls, "post"))):
                yield prefix + str(pattern.pattern), cls


def test_every_post_of_the_api_honours_the_key():
    views = [(path, cls) for path, cls in _post_views() if path.startswith("api/")]
    assert len(views) >= 15
    assert [path for path, cls in views if not issubclass(cls, IdempotentPostMixin)] == []


def test_a_uuid_key_round_trip_through_the_recompute_endpoint(manager):
    client = bearer(manager, "crm")
    key = str(uuid.uuid4())
    first = client.post(f"{API}/kpi-runs/", {}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = client.post(f"{API}/kpi-runs/", {}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == again.status_code and first.status_code < 500
    assert again.json() == first.json()
