"""/healthz and /readyz: real database, real broker (Redis when REDIS_URL is set, else kombu's
filesystem folders), real refused connections; nothing mocked."""

import json
import socket
import subprocess
import sys
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
import yaml
from django.db import connections
from django.test import Client
from django.utils import timezone

from kpis.models import KpiRun

PROBE_HOST = "10.0.3.7:8000"  # a container address: not in ALLOWED_HOSTS
SECRET = "s3cr3t-broker-pass"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def reachable_broker(settings, broker):
    url, options, _env = broker
    settings.CELERY_BROKER_URL = url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = options
    return "redis" if url.startswith("redis") else "filesystem"


def succeeded_run(finished_ago: timedelta) -> KpiRun:
    now = timezone.now()
    return KpiRun.objects.create(
        trigger=KpiRun.Trigger.NIGHTLY,
        status=KpiRun.Status.SUCCEEDED,
        started_at=now - finished_ago - timedelta(minutes=1),
        finished_at=now - finished_ago,
    )


def test_healthz_answers_ok_without_touching_the_database(client):
    # No `db` fixture: any query would fail this test.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


def test_probes_answer_any_host_which_other_pages_refuse(client, db, reachable_broker):
    assert client.get("/login/", HTTP_HOST=PROBE_HOST).status_code == 400
    assert client.get("/healthz", HTTP_HOST=PROBE_HOST).status_code == 200
    assert client.get("/readyz", HTTP_HOST=PROBE_HOST).status_code == 200


def test_probes_are_not_redirected_to_https(settings, db, reachable_broker):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()  # a new handler reads the redirect setting
    assert client.get("/login/").status_code == 301
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_readyz_is_ok_with_a_fresh_successful_kpi_run(client, db, reachable_broker):
    succeeded_run(finished_ago=timedelta(hours=1))
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    checks = body["checks"]
    assert set(checks) == {"database", "broker", "kpis"}
    assert checks["database"]["ok"] is True
    assert checks["database"]["vendor"] == connections["default"].vendor
    assert checks["broker"]["ok"] is True
    assert checks["broker"]["transport"] == reachable_broker
    kpis = checks["kpis"]
    assert kpis["ok"] is True
    assert 3600 <= kpis["last_success_age_seconds"] <= 3660
    assert kpis["threshold_seconds"] == 26 * 3600


def test_readyz_fails_with_a_stale_kpi_run(client, db, reachable_broker):
    succeeded_run(finished_ago=timedelta(hours=27))
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["kpis"]["ok"] is False
    assert 27 * 3600 <= body["checks"]["kpis"]["last_success_age_seconds"] <= 27 * 3600 + 60


def test_the_newest_success_counts_and_the_threshold_is_a_setting(client, db, reachable_broker, settings):
    succeeded_run(finished_ago=timedelta(hours=5))
    settings.READYZ_KPI_MAX_AGE_HOURS = 4
    assert client.get("/readyz").status_code == 503
    succeeded_run(finished_ago=timedelta(hours=3))
    # A failed run afterwards does not reset the clock, nor fail the check by itself.
    KpiRun.objects.create(trigger=KpiRun.Trigger.MANUAL, status=KpiRun.Status.FAILED)
    response = client.get("/readyz")
    assert response.status_code == 200
    kpis = response.json()["checks"]["kpis"]
    assert kpis["threshold_seconds"] == 4 * 3600
    assert 3 * 3600 <= kpis["last_success_age_seconds"] <= 3 * 3600 + 60


def test_before_any_success_the_clock_starts_at_the_first_run(client, db, reachable_broker):
    response = client.get("/readyz")
    assert response.status_code == 200  # a fresh install: nothing to compute yet
    assert response.json()["checks"]["kpis"]["last_success_age_seconds"] is None
    assert response.json()["checks"]["kpis"]["first_run_age_seconds"] is None

    failed = KpiRun.objects.create(trigger=KpiRun.Trigger.NIGHTLY, status=KpiRun.Status.FAILED)
    assert client.get("/readyz").status_code == 200
    KpiRun.objects.filter(pk=failed.pk).update(created_at=timezone.now() - timedelta(hours=30))
    response = client.get("/readyz")
    assert response.status_code == 503
    kpis = response.json()["checks"]["kpis"]
    assert kpis["ok"] is False and kpis["last_success_age_seconds"] is None
    assert 30 * 3600 <= kpis["first_run_age_seconds"] <= 30 * 3600 + 60


def test_readyz_fails_when_the_redis_broker_refuses_and_tells_no_secret(client, db, settings):
    succeeded_run(finished_ago=timedelta(hours=1))
    port = closed_port()
    settings.CELERY_BROKER_URL = f"redis://:{SECRET}@127.0.0.1:{port}/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["transport"] == "redis"
    assert body["checks"]["broker"]["error"] == "ConnectionError"
    assert body["checks"]["broker"]["duration_ms"] < 2000  # refused, not timed out
    assert body["checks"]["database"]["ok"] is True and body["checks"]["kpis"]["ok"] is True
    assert_no_secrets(response, SECRET, "127.0.0.1", f":{port}", "redis://")


def test_a_silent_broker_fails_the_check_within_its_timeout(client, db, settings):
    succeeded_run(finished_ago=timedelta(hours=1))
    settings.READYZ_CHECK_TIMEOUT_SECONDS = 1
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
        response = client.get("/readyz")
    assert response.status_code == 503
    broker = response.json()["checks"]["broker"]
    assert broker["error"] == "TimeoutError"
    assert 1000 <= broker["duration_ms"] < 1900  # one try, no retries


def test_the_filesystem_broker_needs_its_folders(client, db, settings, tmp_path):
    succeeded_run(finished_ago=timedelta(hours=1))
    inbox, processed = tmp_path / "out", tmp_path / "processed"
    inbox.mkdir()
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(inbox),
        "data_folder_out": str(inbox),
        "processed_folder": str(processed),
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {
        "ok": False,
        "transport": "filesystem",
        "error": "BrokerFoldersUnusable",
        "duration_ms": response.json()["checks"]["broker"]["duration_ms"],
    }
    assert_no_secrets(response, str(tmp_path))
    processed.mkdir()
    assert client.get("/readyz").status_code == 200


def test_another_kombu_transport_is_checked_by_connecting(client, db, settings):
    succeeded_run(finished_ago=timedelta(hours=1))
    settings.CELERY_BROKER_URL = "memory://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"]["transport"] == "memory"


def test_readyz_fails_when_the_database_refuses_and_tells_no_secret(
    client, db, reachable_broker, monkeypatch, tmp_path
):
    # The probe opens a connection of its own from these settings; the test's connection stays up.
    probe_settings = connections["default"].settings_dict
    if connections["default"].vendor == "postgresql":
        monkeypatch.setitem(probe_settings, "HOST", "127.0.0.1")
        monkeypatch.setitem(probe_settings, "PORT", str(closed_port()))
        hidden = ["127.0.0.1", probe_settings["PORT"], probe_settings["NAME"]]
    else:
        monkeypatch.setitem(probe_settings, "NAME", str(tmp_path / "missing" / "db.sqlite3"))
        hidden = [str(tmp_path)]
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is False
    assert checks["database"]["error"] == "OperationalError"
    assert checks["kpis"] == {
        "ok": False,
        "last_success_age_seconds": None,
        "threshold_seconds": 26 * 3600,
        "error": "DatabaseUnavailable",
    }
    assert checks["broker"]["ok"] is True
    assert_no_secrets(response, *hidden)


def test_probes_answer_only_get_and_head(client, db, reachable_broker):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 404


def assert_no_secrets(response, *needles: str) -> None:
    text = response.content.decode()
    json.loads(text)  # the whole answer is JSON
    for needle in needles:
        assert needle not in text, needle


COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_compose_waits_only_on_services_that_have_a_healthcheck():
    services = compose_services()
    assert {"web", "worker", "db", "redis"} <= {name for name, s in services.items() if "healthcheck" in s}
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            if condition.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits on {dependency}"
    assert services["web"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "pg_isready" in services["db"]["healthcheck"]["test"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "celery -A prm inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])


def test_the_web_healthcheck_command_passes_against_a_running_server(live_server):
    test = compose_services()["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]  # the image has Python, not curl
    assert "curl" not in (COMPOSE.parent / "Dockerfile").read_text()
    code = test[3]
    assert "http://127.0.0.1:8000/healthz" in code
    run = partial(subprocess.run, capture_output=True, text=True, timeout=30)
    probe = code.replace("http://127.0.0.1:8000", live_server.url)
    passing = run([sys.executable, "-c", probe])
    assert passing.returncode == 0, passing.stderr
    missing = run([sys.executable, "-c", probe.replace("/healthz", "/no-such-page")])
    assert missing.returncode != 0
