"""A real Celery worker runs the nightly KPI task end to end; a killed publisher changes nothing.

The worker is a subprocess on the test database (transaction=True tests commit their data). The
broker is Redis when REDIS_URL is set (CI) — then an unreachable Redis fails the test — else
kombu's filesystem broker in a temp directory.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from kpis.models import KpiRun, KpiValue
from prm.celery import app as celery_app
from tests.kpi_hooks import publication_blocked
from tests.support import kpis as t

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL",)}
    env.update(DATABASE_URL=database_url(), PRM_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="prm.settings")
    env.update(extra)
    return env


@contextlib.contextmanager
def celery_worker(tmp_path: Path, queue: str, *options: str, **env: str):
    """A real `celery -A prm worker` on `queue` (output in .stdout), stopped on exit.

    It leads a process group of its own (its pool processes too), so a test can kill it whole.
    """
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "prm", "worker", "-Q", queue, "--loglevel=INFO", *options],
        cwd=ROOT,
        env=child_env(tmp_path, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)  # pool processes left behind


def small_program():
    web = t.join_source("web")
    a = t.partner("a", web, joined="2026-01-05")
    t.deal("250.00", created="2026-01-10 10:00", closed="2026-02-10 10:00", sourced_by=a)


def wait_for(predicate, seconds: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"subprocess exited ({proc.returncode}) before {what}:\n{out[-3000:]}")
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.worker
def test_a_real_worker_runs_the_nightly_task_and_publishes_the_kpis(tmp_path, broker):
    small_program()
    url, options, env_extra = broker
    queue = f"kpi-test-{uuid.uuid4().hex[:8]}"
    with celery_worker(tmp_path, queue, "--pool=solo", **env_extra) as worker:
        nightly = settings.CELERY_BEAT_SCHEDULE["recompute-kpis-nightly"]
        with celery_app.connection_for_write(url, transport_options=options) as conn:
            celery_app.send_task(nightly["task"], kwargs=nightly["kwargs"], queue=queue, connection=conn)
        run = wait_for(
            lambda: KpiRun.objects.filter(status__in=["succeeded", "failed"]).first(),
            90,
            "the KPI run",
            worker,
        )
        assert run.status == "succeeded", run.error
        assert run.trigger == "nightly" and run.mode == "incremental" and run.celery_task_id
        assert t.value("sourced_revenue", "2026-02", scope="partner", key="a") == Decimal("250.00")
        assert KpiValue.objects.filter(run=run).count() == run.rows_written > 0


def test_a_run_killed_while_publishing_leaves_the_published_set_and_a_rerun_completes_it(tmp_path, settings):
    from deals.models import Deal
    from kpis.services import kpi_run_create, kpi_run_execute

    small_program()
    t.recompute()
    before = set(KpiValue.objects.values_list("scope", "scope_key", "grain", "period", "metric", "value"))
    Deal.objects.update(amount=Decimal("999.00"))
    run, _ = kpi_run_create(trigger="manual")

    def running() -> bool:
        return KpiRun.objects.filter(pk=run.pk, status="running").exists()

    # Another session holds what the publication must write: the publisher waits inside its
    # publishing transaction (SQLite: wherever it is once running), and is killed there.
    with publication_blocked(running) as blocked:
        publisher = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import django; django.setup(); from kpis.services import kpi_run_execute; "
                f"print('start', flush=True); kpi_run_execute(run_id={run.pk})",
            ],
            cwd=ROOT,
            env=child_env(tmp_path, KPI_RUN_HEARTBEAT_SECONDS="1", KPI_RUN_LEASE_SECONDS="2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for(blocked, 60, "the publisher to wait for the lock", publisher)
        finally:
            publisher.send_signal(signal.SIGKILL)
            publisher.wait()
    after = set(KpiValue.objects.values_list("scope", "scope_key", "grain", "period", "metric", "value"))
    assert after == before
    run.refresh_from_db()
    assert run.status == "running" and run.heartbeat_at  # the dead worker never finished it
    settings.KPI_RUN_HEARTBEAT_SECONDS, settings.KPI_RUN_LEASE_SECONDS = 1, 2
    # Within the lease the worker may be alive: a second delivery of its task does nothing.
    if not run.is_stuck():
        assert kpi_run_execute(run_id=run.pk).pk == run.pk
        assert KpiRun.objects.get(pk=run.pk).status == "running" and KpiRun.objects.count() == 2
    wait_for(lambda: KpiRun.objects.abandoned().filter(pk=run.pk).exists(), 10, "the lease to expire")
    # Then the redelivered task replaces the run and completes the replacement.
    replacement = kpi_run_execute(run_id=run.pk)
    assert replacement.status == "succeeded" and replacement.replaces_id == run.pk
    assert replacement.attempt == 2 and replacement.trigger == "manual"
    run.refresh_from_db()
    assert (run.status, run.released_by) == ("failed", "its redelivered task")
    assert run.error.startswith("abandoned: ") and f"replaced by run #{replacement.pk}" in run.error
    assert t.value("sourced_revenue", "2026-02", scope="partner", key="a") == Decimal("999.00")
