"""Requests that end: a statement outlasting the web statement timeout is cancelled by PostgreSQL and
the request answers 503, leaving no query running (prm/database.py, docs/operations.md)."""

import threading
import time

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from partners.roles import StaffRole
from prm.database import apply_session_settings, current_role, statement_timeout_seconds
from prm.middleware import QUERY_TIMEOUT
from tests.factories import StaffUserFactory


@pytest.fixture
def one_second_timeout(settings):
    settings.DB_STATEMENT_TIMEOUT_SECONDS = 1
    connection.ensure_connection()
    apply_session_settings(connection)
    yield
    settings.DB_STATEMENT_TIMEOUT_SECONDS = 30
    apply_session_settings(connection)


@pytest.fixture
def partners_locked():
    """Another session holds an exclusive lock on the partners table, so any read of it waits (as a
    runaway query would run); released after 20 s at the latest, so a missing timeout fails the
    test instead of hanging it."""
    raw = connection.get_new_connection(connection.get_connection_params())
    cursor = raw.cursor()
    cursor.execute("LOCK TABLE partners_partner IN ACCESS EXCLUSIVE MODE")
    cursor.execute("SELECT pg_backend_pid()")
    locker_pid = cursor.fetchone()[0]
    release = threading.Timer(20, raw.cancel)
    release.start()
    yield cursor, locker_pid
    release.cancel()
    raw.rollback()
    raw.close()


def _running_queries(cursor, *, besides: int) -> list[tuple]:
    cursor.execute(
        "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid NOT IN (pg_backend_pid(), %s) AND state <> 'idle'",
        [besides],
    )
    return cursor.fetchall()


def test_each_role_has_its_own_statement_timeout(db):
    assert current_role() == "web"
    assert statement_timeout_seconds() == 30
    assert statement_timeout_seconds("task") == 1800 and statement_timeout_seconds("command") == 0


@pytest.mark.postgres
def test_web_sessions_are_opened_with_the_web_timeout(db):
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "30s"
        cursor.execute("SHOW client_connection_check_interval")
        assert cursor.fetchone()[0] == "5s"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("api", [False, True], ids=["page", "api"])
def test_a_request_whose_query_outlasts_the_timeout_gets_a_503_and_leaves_no_query_running(
    api, one_second_timeout, partners_locked
):
    cursor, locker_pid = partners_locked
    manager = StaffUserFactory(username="manager", role=StaffRole.PARTNER_MANAGER)
    client = APIClient() if api else Client()
    client.force_login(manager)

    started = time.monotonic()
    response = client.get("/api/v1/partners/" if api else "/dashboard/partners/")
    waited = time.monotonic() - started

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    if api:
        assert response.json() == {
            "error": {"status": 503, "code": "timeout", "detail": QUERY_TIMEOUT, "fields": {}}
        }
    else:
        assert "This page took too long" in response.content.decode()
    assert 1 <= waited < 10
    # The cancelled statement is gone: only the lock holder's session is busy.
    assert _running_queries(cursor, besides=locker_pid) == []
    with connection.cursor() as own:
        own.execute("SELECT pg_backend_pid()")
        own_pid = own.fetchone()[0]
    cursor.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [own_pid])
    assert cursor.fetchone()[0] == "idle"
