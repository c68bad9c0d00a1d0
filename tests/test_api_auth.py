"""Personal API tokens, authentication and throttling."""

import base64

from django.contrib.auth.models import Group
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from api.models import ApiToken, hash_token_secret
from partners.roles import StaffRole
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of, ids


def _bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_a_token_is_shown_once_and_stored_only_as_a_hash(as_manager, manager):
    response = as_manager.post(f"{API}/auth/tokens/", {"name": "CRM sync"}, format="json")
    assert response.status_code == 201
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("prm_") and len(secret) > 40
    token = ApiToken.objects.get(pk=body["id"])
    assert token.user == manager
    assert token.secret_hash == hash_token_secret(secret)
    assert secret not in {token.secret_hash, token.prefix, token.name}
    listed = as_manager.get(f"{API}/auth/tokens/").json()["results"]
    assert [row["name"] for row in listed] == ["CRM sync"]
    assert "secret" not in listed[0]


def test_a_token_authenticates_as_its_user_with_that_users_scope(world_a, world_b, admin_b):
    secret = _bearer_secret_for(admin_b)
    client = _bearer(secret)
    assert ids(client.get(f"{API}/deals/")) == {world_b.deal.pk}
    assert ApiToken.objects.get(user=admin_b).last_used_at is not None


def _bearer_secret_for(user) -> str:
    from api.services import api_token_create

    _, secret = api_token_create(user=user, name="script")
    return secret


def test_a_revoked_token_stops_working_at_once(as_manager, manager, world_a):
    secret = as_manager.post(f"{API}/auth/tokens/", {"name": "laptop"}, format="json").json()["secret"]
    token = ApiToken.objects.get(user=manager)
    assert _bearer(secret).get(f"{API}/deals/").status_code == 200
    assert as_manager.delete(f"{API}/auth/tokens/{token.pk}/").status_code == 204
    response = _bearer(secret).get(f"{API}/deals/")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert as_manager.get(f"{API}/auth/tokens/").json()["results"][0]["revoked_at"] is not None


def test_a_user_has_several_tokens_and_revoking_one_keeps_the_others(manager, as_manager, world_a):
    first = as_manager.post(f"{API}/auth/tokens/", {"name": "one"}, format="json").json()
    second = as_manager.post(f"{API}/auth/tokens/", {"name": "two"}, format="json").json()
    as_manager.delete(f"{API}/auth/tokens/{first['id']}/")
    assert _bearer(first["secret"]).get(f"{API}/deals/").status_code == 401
    assert _bearer(second["secret"]).get(f"{API}/deals/").status_code == 200


def test_nobody_sees_or_revokes_another_users_tokens(manager, admin_a, as_admin_a, world_a):
    token_id = _token_id_for(manager)
    assert as_admin_a.get(f"{API}/auth/tokens/").json()["results"] == []
    response = as_admin_a.delete(f"{API}/auth/tokens/{token_id}/")
    assert response.status_code == 404
    assert ApiToken.objects.get(pk=token_id).revoked_at is None


def _token_id_for(user) -> int:
    from api.services import api_token_create

    token, _ = api_token_create(user=user, name="theirs")
    return token.pk


def test_a_script_gets_its_first_token_with_a_username_and_password(manager, db):
    client = APIClient()
    credentials = base64.b64encode(f"manager:{DEFAULT_PASSWORD}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    response = client.post(f"{API}/auth/tokens/", {"name": "first"}, format="json")
    assert response.status_code == 201
    assert _bearer(response.json()["secret"]).get(f"{API}/deals/").status_code == 200


def test_basic_auth_works_only_for_the_token_endpoint(manager, db):
    client = APIClient()
    credentials = base64.b64encode(f"manager:{DEFAULT_PASSWORD}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert client.get(f"{API}/deals/").status_code == 401


def test_a_wrong_token_is_a_401_in_the_error_shape(db):
    response = _bearer("prm_not-a-real-token").get(f"{API}/deals/")
    assert response.status_code == 401
    assert error_of(response)["detail"] == "Invalid or revoked token."


def test_a_token_needs_a_name(as_manager):
    response = as_manager.post(f"{API}/auth/tokens/", {"name": "  "}, format="json")
    assert response.status_code == 400
    assert "name" in error_of(response)["fields"]


def test_token_requests_are_throttled_with_429_and_retry_after(as_manager):
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "auth": "2/minute"}
    with override_settings(REST_FRAMEWORK={**_rest_settings(), "DEFAULT_THROTTLE_RATES": rates}):
        assert as_manager.get(f"{API}/auth/tokens/").status_code == 200
        assert as_manager.get(f"{API}/auth/tokens/").status_code == 200
        response = as_manager.get(f"{API}/auth/tokens/")
    assert response.status_code == 429
    assert error_of(response)["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_writes_are_throttled_but_reads_are_not(world_a, as_manager):
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "write": "1/minute"}
    body = {"name": "Throttled", "domain": "throttled.example"}
    with override_settings(REST_FRAMEWORK={**_rest_settings(), "DEFAULT_THROTTLE_RATES": rates}):
        assert as_manager.post(f"{API}/accounts/", body, format="json").status_code == 201
        assert as_manager.post(f"{API}/accounts/", body, format="json").status_code == 429
        for _ in range(3):
            assert as_manager.get(f"{API}/accounts/").status_code == 200


def _rest_settings() -> dict:
    from django.conf import settings

    return dict(settings.REST_FRAMEWORK)


def test_password_guessing_on_the_token_endpoint_is_throttled_before_authentication(manager):
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "auth": "2/minute"}
    client = APIClient()
    wrong = base64.b64encode(b"manager:wrong-password").decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {wrong}")
    with override_settings(REST_FRAMEWORK={**_rest_settings(), "DEFAULT_THROTTLE_RATES": rates}):
        statuses = [
            client.post(f"{API}/auth/tokens/", {"name": "x"}, format="json").status_code for _ in range(3)
        ]
    assert statuses == [401, 401, 429]
    assert ApiToken.objects.count() == 0


def test_a_tokens_user_acts_with_that_users_staff_roles(manager, salesops, admin_a, world_a):
    """Token authentication reads the user's staff roles with the token: a partner manager's token
    writes, a sales ops token reads everything but writes nothing, a partner's token reads its own
    partner's rows only, and a superuser's token does everything."""
    deal = f"{API}/deals/{world_a.deal.pk}/"
    as_token = {user.username: _bearer(_bearer_secret_for(user)) for user in (manager, salesops, admin_a)}
    root = UserFactory(username="root", is_superuser=True)
    as_token["root"] = _bearer(_bearer_secret_for(root))
    renamed = {"name": "Renamed"}
    assert as_token["manager"].patch(deal, renamed, format="json").status_code == 200
    assert as_token["root"].patch(deal, {"name": "Again"}, format="json").status_code == 200
    assert as_token["salesops"].get(deal).status_code == 200
    assert as_token["salesops"].patch(deal, renamed, format="json").status_code == 403
    assert as_token["alice"].patch(deal, renamed, format="json").status_code == 403
    for name, status in {"manager": 200, "salesops": 200, "root": 200, "alice": 403}.items():
        assert as_token[name].get(f"{API}/kpi-runs/").status_code == status, name
    # A role granted or withdrawn counts from the token's next request on.
    salesops.groups.set([Group.objects.get(name=StaffRole.PARTNER_MANAGER.value)])
    assert as_token["salesops"].patch(deal, {"name": "By ops"}, format="json").status_code == 200
    manager.groups.clear()
    assert as_token["manager"].get(f"{API}/kpi-runs/").status_code == 403


def test_a_token_of_a_deactivated_user_is_refused(manager, world_a):
    client = _bearer(_bearer_secret_for(manager))
    assert client.get(f"{API}/deals/").status_code == 200
    manager.is_active = False
    manager.save(update_fields=["is_active"])
    response = client.get(f"{API}/deals/")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_a_token_request_reads_its_user_and_roles_in_one_query(manager, world_a):
    client = _bearer(_bearer_secret_for(manager))
    url = f"{API}/kpi-values/?grain=month"
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200  # a cached read: the token, then the version
    statements = [query["sql"] for query in queries.captured_queries]
    assert len(statements) == 2, statements
    token_query, version_query = statements
    # PostgreSQL runs the statement its session prepared on the first request.
    assert (
        token_query.startswith("EXECUTE prm_api_token")
        if connection.vendor == "postgresql"
        else ("auth_group" in token_query and "secret_hash" in token_query)
    )
    assert "kpipublication" in version_query


def test_token_authentication_works_with_and_without_prepared_statements(settings, manager, world_a):
    """The session prepares the token query once (PostgreSQL); turned off, it runs plainly."""
    client = _bearer(_bearer_secret_for(manager))
    for prepared in (True, False, True):
        settings.DB_PREPARED_STATEMENTS = prepared
        assert ids(client.get(f"{API}/deals/")) == {world_a.deal.pk}
