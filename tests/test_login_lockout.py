"""Login lockout (django-axes): per (username, client address), on /login/, /admin/login/ and the
API's HTTP Basic, one count for all three; real requests, real attempt records."""

import base64
import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import RequestFactory
from rest_framework.test import APIClient

from api.models import ApiToken
from ops.client_ip import client_ip_address
from prm import settings as base_settings
from tests.factories import DEFAULT_PASSWORD, UserFactory
from tests.support.api import API, error_of

LIMIT = 5
LOCKED_TITLE = "Login temporarily locked"


@pytest.fixture(autouse=True)
def _lockout_settings(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.TRUSTED_PROXY_COUNT = 0


@pytest.fixture
def ana(db):
    return UserFactory(username="ana")


@pytest.fixture
def root(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def log_in(client, username: str, password: str, url: str = "/login/", **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


def fail(client, username: str, times: int, url: str = "/login/", **extra) -> list[int]:
    return [log_in(client, username, "wrong-password", url, **extra).status_code for _ in range(times)]


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_the_defaults_are_five_failures_and_fifteen_minutes_per_username_and_address():
    # The settings module as read from the environment (the fixture above overrides django.conf's).
    assert base_settings.AXES_FAILURE_LIMIT == 5
    assert base_settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert base_settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert base_settings.TRUSTED_PROXY_COUNT == 0


def test_after_the_limit_the_right_password_is_refused_with_the_lockout_page(client, ana):
    assert fail(client, "ana", LIMIT - 1) == [200] * (LIMIT - 1)  # the form, with its error
    locking = log_in(client, "ana", "wrong-password")
    assert locking.status_code == 429  # the failure that reaches the limit locks at once
    response = log_in(client, "ana", DEFAULT_PASSWORD)
    assert response.status_code == 429
    assert not logged_in(client)
    page = response.content.decode()
    assert LOCKED_TITLE in page
    assert "Too many failed logins (5) for this account from your address." in page
    assert "try again in 15 minutes" in page
    assert "Skip to main content" in page  # our base template
    assert 890 <= int(response["Retry-After"]) <= 900
    attempt = AccessAttempt.objects.get(username="ana")
    assert (attempt.ip_address, attempt.failures_since_start) == ("127.0.0.1", LIMIT)  # refusals uncounted


def test_another_username_from_the_same_address_is_not_locked(client, ana, db):
    UserFactory(username="ben")
    fail(client, "ana", LIMIT)
    response = log_in(client, "ben", DEFAULT_PASSWORD)
    assert response.status_code == 302
    assert logged_in(client)


def test_the_same_username_from_another_address_is_not_locked(client, ana):
    fail(client, "ana", LIMIT)
    assert log_in(client, "ana", DEFAULT_PASSWORD).status_code == 429
    response = log_in(client, "ana", DEFAULT_PASSWORD, REMOTE_ADDR="198.51.100.20")
    assert response.status_code == 302


def test_the_admin_login_locks_out_too(client, root):
    assert fail(client, "root", LIMIT, url="/admin/login/") == [200] * (LIMIT - 1) + [429]
    response = log_in(client, "root", DEFAULT_PASSWORD, url="/admin/login/")
    assert response.status_code == 429
    assert LOCKED_TITLE in response.content.decode()
    assert not logged_in(client)


def test_failures_on_every_login_form_add_up(client, root):
    fail(client, "root", LIMIT - 1, url="/login/")
    assert fail(client, "root", 1, url="/admin/login/") == [429]
    assert log_in(client, "root", DEFAULT_PASSWORD, url="/login/").status_code == 429


def test_a_successful_login_clears_the_failures(client, ana):
    fail(client, "ana", LIMIT - 1)
    assert log_in(client, "ana", DEFAULT_PASSWORD).status_code == 302
    client.post("/logout/")
    assert fail(client, "ana", LIMIT - 1) == [200] * (LIMIT - 1)
    assert log_in(client, "ana", DEFAULT_PASSWORD).status_code == 302


def test_the_lock_ends_after_the_cool_off(client, ana, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    fail(client, "ana", LIMIT)
    assert log_in(client, "ana", DEFAULT_PASSWORD).status_code == 429
    time.sleep(1.2)
    assert log_in(client, "ana", DEFAULT_PASSWORD).status_code == 302
    assert logged_in(client)


def test_without_a_cool_off_only_an_operator_unlocks(client, ana, settings):
    settings.AXES_COOLOFF_TIME = None
    fail(client, "ana", LIMIT)
    response = log_in(client, "ana", DEFAULT_PASSWORD)
    assert response.status_code == 429
    assert "Ask an administrator to unlock this account." in response.content.decode()
    assert not response.has_header("Retry-After")
    call_command("axes_reset_username", "ana")
    assert log_in(client, "ana", DEFAULT_PASSWORD).status_code == 302


def test_an_operator_unlocks_one_address_and_username(client, ana):
    fail(client, "ana", LIMIT)
    call_command("axes_reset_ip_username", "127.0.0.1", "ana")
    assert log_in(client, "ana", DEFAULT_PASSWORD).status_code == 302


def test_behind_a_trusted_proxy_the_forwarded_address_is_locked(client, ana, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    fail(client, "ana", LIMIT, HTTP_X_FORWARDED_FOR="203.0.113.5", **proxy)
    assert AccessAttempt.objects.get(username="ana").ip_address == "203.0.113.5"
    # Forging an address left of the proxy's entry changes nothing: the proxy's entry counts.
    forged = "198.51.100.1, 203.0.113.5"
    assert log_in(client, "ana", DEFAULT_PASSWORD, HTTP_X_FORWARDED_FOR=forged, **proxy).status_code == 429
    other = log_in(client, "ana", DEFAULT_PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.6", **proxy)
    assert other.status_code == 302


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        (0, "203.0.113.5", "10.0.0.2"),  # no trusted proxy: the header is the client's word only
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "198.51.100.1, 203.0.113.5", "203.0.113.5"),
        (2, "198.51.100.1, 203.0.113.5, 10.0.0.9", "203.0.113.5"),
        (2, "203.0.113.5", "10.0.0.2"),  # fewer entries than proxies: the chain was bypassed
        (1, "not-an-address", "10.0.0.2"),
        (1, "2001:db8::1", "2001:db8::1"),
        (1, "", "10.0.0.2"),
    ],
)
def test_client_address_resolution(settings, trusted, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = trusted
    request = RequestFactory().post("/login/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip_address(request) == expected


def basic(username: str, password: str) -> APIClient:
    client = APIClient()
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    return client


def test_the_api_password_check_locks_out_in_the_api_error_shape(ana):
    url, body = f"{API}/auth/tokens/", {"name": "x"}
    statuses = [basic("ana", "wrong").post(url, body, format="json").status_code for _ in range(LIMIT)]
    assert statuses == [401] * (LIMIT - 1) + [429]
    response = basic("ana", DEFAULT_PASSWORD).post(url, body, format="json")
    assert response.status_code == 429
    error = error_of(response)
    assert error["code"] == "locked_out"
    assert error["detail"].startswith("Too many failed logins for this account from this address.")
    assert 890 <= int(response["Retry-After"]) <= 900
    assert ApiToken.objects.count() == 0
    elsewhere = basic("ana", DEFAULT_PASSWORD).post(url, body, format="json", REMOTE_ADDR="198.51.100.20")
    assert elsewhere.status_code == 201


def test_login_form_failures_lock_the_api_too(client, ana):
    fail(client, "ana", LIMIT)
    response = basic("ana", DEFAULT_PASSWORD).post(f"{API}/auth/tokens/", {"name": "x"}, format="json")
    assert response.status_code == 429
    assert error_of(response)["code"] == "locked_out"


@pytest.mark.parametrize("username", ["u" * 300, "nul\x00byte", ""])
def test_odd_usernames_are_refused_never_a_500(client, db, username):
    response = basic(username, "pw").post(f"{API}/auth/tokens/", {"name": "x"}, format="json")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"
    # The form with its errors; a NUL is refused before any view reads the form (prm.middleware).
    assert log_in(client, username, "pw").status_code == (400 if "\x00" in username else 200)
