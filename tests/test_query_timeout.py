"""Requests that end: a statement outlasting the web statement timeout is cancelled by PostgreSQL and
the request answers 503, leaving no query running (prm/database.py, docs/operations.md)."""

import threading
import time
from datetime import date

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
def locked(request):
    """Another session holds an exclusive lock on a table (partners unless the test says), so any
    read of it waits (as a runaway query would run); released after 20 s at the latest, so a missing
    timeout fails the test instead of hanging it."""
    table = getattr(request, "param", "partners_partner")
    raw = connection.get_new_connection(connection.get_connection_params())
    cursor = raw.cursor()
    cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
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
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


@pytest.mark.postgres
def test_tasks_keep_the_servers_jit(db):
    from prm.database import set_role

    with connection.cursor() as cursor:
        cursor.execute("SELECT reset_val FROM pg_settings WHERE name = 'jit'")
        server = cursor.fetchone()[0]
        try:
            set_role("task")
            cursor.execute("SHOW jit")
            assert cursor.fetchone()[0] == server
        finally:
            set_role("web")
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


ATTRIBUTION = "model=linear&period_from=2026-01-01&period_to=2026-03-31"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("path", "locked"),
    [
        ("/dashboard/partners/", "partners_partner"),
        ("/api/v1/partners/", "partners_partner"),
        # The engine computed on request (issue 22): the attribution explorer and its API.
        ("/dashboard/attribution/?period=2026-03", "deals_deal"),
        (f"/api/v1/kpi-attribution/?{ATTRIBUTION}", "deals_deal"),
    ],
    indirect=["locked"],
    ids=["page", "api", "attribution-page", "attribution-api"],
)
def test_a_request_whose_query_outlasts_the_timeout_gets_a_503_and_leaves_no_query_running(
    path, one_second_timeout, locked
):
    cursor, locker_pid = locked
    api = path.startswith("/api/")
    manager = StaffUserFactory(username="manager", role=StaffRole.PARTNER_MANAGER)
    client = APIClient() if api else Client()
    client.force_login(manager)

    started = time.monotonic()
    response = client.get(path)
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_attribution_on_request_runs_with_a_kpi_runs_settings_that_end_with_it():
    from django.test.utils import CaptureQueriesContext

    from kpis.engine.session import TRANSACTION_SETTINGS
    from kpis.services import attribution_by_partner

    with CaptureQueriesContext(connection) as queries:
        assert (
            attribution_by_partner(model="linear", period_from=date(2026, 1, 1), period_to=date(2026, 3, 31))
            == []
        )
    statements = [q["sql"] for q in queries.captured_queries]
    first_engine = next(i for i, sql in enumerate(statements) if "kx_" in sql)
    settings_set = [sql for sql in statements[:first_engine] if "set_config" in sql]
    assert any("'work_mem', '256MB', true" in sql for sql in settings_set), settings_set
    assert TRANSACTION_SETTINGS["work_mem"] == "256MB"
    with connection.cursor() as cursor:
        cursor.execute("SHOW work_mem")
        assert cursor.fetchone()[0] != "256MB"  # SET LOCAL: the request's session is as it was
