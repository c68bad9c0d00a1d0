"""Runs that recover by themselves: the lease, superseding a stuck run, the reaper, a released run
that publishes nothing, the `kpi_runs` command, Redis's visibility timeout.

The same with real workers killed whole: tests/test_kpi_recovery_worker.py.
"""

import re
import threading
import time
from datetime import date, timedelta

import pytest
from celery import Celery
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from kpis import recovery
from kpis.engine import KpiComputation
from kpis.models import KpiRun, KpiValue
from kpis.services import kpi_recompute_request, kpi_run_create, kpi_run_execute
from tests.factories import StaffUserFactory
from tests.support import kpis as t
from tests.test_kpi_runs import published, small_program

pytestmark = pytest.mark.django_db


def make_run(status: str, *, ago: float | None = None, field: str = "heartbeat_at", **fields) -> KpiRun:
    """A run whose `field` (heartbeat_at, started_at, dispatched_at, created_at) was `ago` s ago."""
    run = KpiRun.objects.create(trigger="manual", mode="full", status=status, **fields)
    stamps = {"started_at": timezone.now()} if status == "running" else {}
    if ago is not None:
        stamps[field] = timezone.now() - timedelta(seconds=ago)
    KpiRun.objects.filter(pk=run.pk).update(**stamps)
    run.refresh_from_db()
    return run


@pytest.fixture
def lease(settings):
    settings.KPI_RUN_HEARTBEAT_SECONDS, settings.KPI_RUN_LEASE_SECONDS = 15, 120
    settings.KPI_RUN_QUEUED_RESEND_SECONDS, settings.KPI_RUN_MAX_ATTEMPTS = 300, 3
    return settings


# -- the lease ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "field", "ago", "stuck"),
    [
        ("running", "heartbeat_at", 115, False),
        ("running", "heartbeat_at", 125, True),
        ("running", "started_at", 125, True),  # never beat: its start counts
        ("queued", "created_at", 295, False),
        ("queued", "created_at", 305, True),
        # Resent a moment ago but created long ago: no worker took it, so it is stuck all the same
        # (the reaper's resends must not keep it fresh).
        ("queued", "dispatched_at", 5, True),
        ("succeeded", "created_at", 10_000, False),
        ("failed", "created_at", 10_000, False),
    ],
)
def test_a_run_is_stuck_when_its_heartbeat_or_its_message_is_older_than_its_lease(
    lease, status, field, ago, stuck
):
    run = make_run(status, ago=ago, field=field)
    if field == "dispatched_at":  # created three hours ago, resent `ago` seconds ago
        KpiRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(hours=3))
        run.refresh_from_db()
    if field == "started_at":
        KpiRun.objects.filter(pk=run.pk).update(heartbeat_at=None)
        run.refresh_from_db()
    assert run.is_stuck() is stuck
    assert KpiRun.objects.stuck().filter(pk=run.pk).exists() is stuck


# -- a new request never waits for a stuck run ---------------------------------------------------
def test_a_request_ends_a_stuck_running_run_and_takes_its_place(lease):
    dead = make_run("running", ago=600)
    user = StaffUserFactory(username="alice")
    run, created = kpi_run_create(trigger="manual", requested_by=user)
    assert created and run.pk != dead.pk and run.replaces == dead
    dead.refresh_from_db()
    assert (dead.status, dead.released_by) == ("failed", "a new manual request (alice)")
    assert dead.error.startswith("abandoned: no sign of life for 600 s")
    assert dead.error.endswith(f"superseded by a new manual request (alice) (run #{run.pk})")


def test_a_request_still_returns_a_live_run(lease):
    live = make_run("running", ago=5)
    assert kpi_run_create(trigger="manual") == (live, False)
    queued = make_run("queued", ago=60, field="dispatched_at")
    KpiRun.objects.filter(pk=live.pk).update(status="succeeded")
    assert kpi_run_create(trigger="manual") == (queued, False)


def test_recompute_command_runs_although_a_dead_run_says_running(lease, capsys):
    small_program()
    dead = make_run("running", ago=3600)
    call_command("recompute_kpis", "--as-of", "2026-12-31")
    assert "succeeded" in capsys.readouterr().out
    assert KpiRun.objects.get(replaces=dead).status == "succeeded"


# -- the reaper --------------------------------------------------------------------------------
def test_the_reaper_replaces_a_run_whose_worker_died_and_sends_the_replacement(
    lease, django_capture_on_commit_callbacks
):
    user = StaffUserFactory()
    dead = make_run("running", ago=121, requested_by=user, as_of=date(2026, 5, 1), queue="kpis")
    with django_capture_on_commit_callbacks() as sent:
        done = recovery.reap()
    replacement = KpiRun.objects.get(replaces=dead)
    assert done.replaced == [(dead.pk, replacement.pk)] and done.resent == []
    assert len(sent) == 1 and replacement.dispatched_at is not None
    assert (replacement.status, replacement.attempt, replacement.trigger, replacement.mode) == (
        "queued",
        2,
        "manual",
        "full",
    )
    assert (replacement.requested_by, replacement.as_of, replacement.queue) == (
        user,
        date(2026, 5, 1),
        "kpis",
    )
    dead.refresh_from_db()
    assert (dead.status, dead.released_by) == ("failed", "reaper")
    assert dead.error.endswith(f"; replaced by run #{replacement.pk}")
    # The next pass finds nothing: the replacement was just sent.
    with django_capture_on_commit_callbacks() as again:
        assert not recovery.reap()
    assert again == []


def test_the_reaper_gives_up_on_a_run_whose_worker_died_at_every_attempt(lease):
    dead = make_run("running", ago=121, attempt=3)
    assert recovery.reap().replaced == [(dead.pk, None)]
    dead.refresh_from_db()
    assert dead.status == "failed" and "not replaced: attempt 3" in dead.error
    assert KpiRun.objects.count() == 1


def test_the_reaper_sends_a_queued_run_again_once_per_resend_interval(
    lease, django_capture_on_commit_callbacks
):
    lost = make_run("queued", ago=301, field="dispatched_at")
    with django_capture_on_commit_callbacks() as sent:
        assert recovery.reap().resent == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == "queued" and len(sent) == 1
    assert timezone.now() - lost.dispatched_at < timedelta(seconds=10)
    with django_capture_on_commit_callbacks() as again:
        assert not recovery.reap()
    assert again == [] and KpiRun.objects.count() == 1


def test_the_reaper_leaves_live_runs_alone(lease):
    live = make_run("running", ago=100)
    waiting = make_run("queued", ago=200, field="created_at")
    assert not recovery.reap()
    assert set(KpiRun.objects.values_list("pk", "status")) == {(live.pk, "running"), (waiting.pk, "queued")}


def test_a_request_records_when_and_where_its_message_went(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as sent:
        run = kpi_recompute_request(trigger="manual")
    run.refresh_from_db()
    assert len(sent) == 1 and run.dispatched_at is not None and run.queue == ""


# -- claiming and publishing ---------------------------------------------------------------------
def test_a_second_delivery_while_the_run_is_alive_does_nothing(lease):
    small_program()
    t.recompute()
    before = published()
    live = make_run("running", ago=5)
    assert kpi_run_execute(run_id=live.pk) == live
    live.refresh_from_db()
    assert live.status == "running" and published() == before and KpiRun.objects.count() == 2


def test_a_redelivered_task_of_a_dead_run_runs_its_replacement(lease):
    small_program()
    dead = make_run("running", ago=121, as_of=date(2026, 12, 31))
    replacement = kpi_run_execute(run_id=dead.pk, task_id="task-2")
    assert replacement.replaces_id == dead.pk and replacement.status == "succeeded"
    assert (replacement.attempt, replacement.celery_task_id, replacement.as_of) == (
        2,
        "task-2",
        date(2026, 12, 31),
    )
    assert KpiRun.objects.get(pk=dead.pk).released_by == "its redelivered task"
    assert KpiValue.objects.filter(run=replacement).count() == replacement.rows_written > 0


@pytest.mark.parametrize("requeue", [False, True])
def test_a_run_released_while_it_computes_publishes_nothing(lease, monkeypatch, requeue):
    small_program()
    t.recompute()
    before = published()
    KpiRun.objects.all().update(status="succeeded")
    from deals.models import Deal

    Deal.objects.update(amount=12345)
    run, _ = kpi_run_create(trigger="manual")
    original = KpiComputation.run

    def released_meanwhile(self):
        result = original(self)
        recovery.release_run(run.pk, by="test operator", force=True, requeue=requeue)
        return result

    monkeypatch.setattr(KpiComputation, "run", released_meanwhile)
    finished = kpi_run_execute(run_id=run.pk)
    assert finished.pk == run.pk and finished.status == "failed"
    assert finished.released_by == "test operator" and "forced" in finished.error
    assert published() == before
    assert KpiRun.objects.filter(replaces=run, status="queued").exists() is requeue


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunked_run_released_while_it_computes_publishes_nothing(lease, monkeypatch):
    _demo()
    t.recompute()
    before = published()
    lease.KPI_CHUNKS = 2
    from deals.models import Deal

    Deal.objects.update(amount=777)
    run, _ = kpi_run_create(trigger="manual")
    original = KpiComputation.run_chunk

    def released_meanwhile(self, number, chunk):
        if number == 0:
            recovery.release_run(run.pk, by="test operator", force=True, requeue=False)
        return original(self, number, chunk)

    monkeypatch.setattr(KpiComputation, "run_chunk", released_meanwhile)
    finished = kpi_run_execute(run_id=run.pk)
    assert finished.status == "failed" and finished.released_by == "test operator"
    assert published() == before


def _demo() -> None:
    from interchange.demo import DemoSize
    from interchange.seeding import seed_database

    seed_database(DemoSize(partners=20, deals=200, seed=3), progress=lambda _: None)


# -- the heartbeat -----------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_beats_while_the_run_runs_and_stops_once_it_has_ended(settings):
    settings.KPI_RUN_HEARTBEAT_SECONDS = 1
    run = make_run("running", ago=0)
    first = run.heartbeat_at
    beats = []
    with recovery.heartbeat(run.pk):
        for _ in range(2):
            time.sleep(1.2)
            beats.append(KpiRun.objects.get(pk=run.pk).heartbeat_at)
        KpiRun.objects.filter(pk=run.pk).update(status="failed")
        time.sleep(1.5)
        assert not any(thread.name == f"kpi-heartbeat-{run.pk}" for thread in threading.enumerate())
    assert first < beats[0] < beats[1]


def test_no_heartbeat_inside_a_callers_transaction(settings):
    settings.KPI_RUN_HEARTBEAT_SECONDS = 1
    run = make_run("running", ago=0)
    assert connection.in_atomic_block  # the test's transaction: no other session sees the run
    with recovery.heartbeat(run.pk):
        assert not any(thread.name.startswith("kpi-heartbeat-") for thread in threading.enumerate())


# -- releasing by hand -------------------------------------------------------------------------
def test_release_refuses_a_live_run_unless_forced_and_a_finished_or_unknown_one(lease):
    live = make_run("running", ago=10)
    with pytest.raises(ValidationError, match="not stuck"):
        recovery.release_run(live.pk, by="ops")
    released, replacement = recovery.release_run(live.pk, by="ops", force=True)
    assert (released.status, released.released_by) == ("failed", "ops") and replacement.replaces == released
    with pytest.raises(ValidationError, match="has finished"):
        recovery.release_run(live.pk, by="ops")
    with pytest.raises(ValidationError, match="no KPI run #999"):
        recovery.release_run(999, by="ops")


def test_kpi_runs_lists_a_stuck_run_and_releases_it_in_the_operators_name(lease, capsys):
    stuck = make_run("running", ago=400)
    call_command("kpi_runs")
    listing = capsys.readouterr().out
    assert f"STUCK: release with --release {stuck.pk}" in listing
    assert re.search(r" 40[01] s ago ", listing)
    call_command("kpi_runs", "--release", str(stuck.pk))
    out = capsys.readouterr().out
    stuck.refresh_from_db()
    replacement = KpiRun.objects.get(replaces=stuck)
    assert stuck.status == "failed" and stuck.released_by.startswith("command kpi_runs (")
    assert f"KPI run #{replacement.pk} queued in its place (sent to the default queue)" in out
    assert f"ended by {stuck.released_by}" in out  # the listing after it


def test_kpi_runs_refuses_to_release_a_live_run_without_force(lease):
    live = make_run("running", ago=10)
    with pytest.raises(CommandError, match="not stuck"):
        call_command("kpi_runs", "--release", str(live.pk))
    call_command("kpi_runs", "--release", str(live.pk), "--force", "--no-requeue")
    assert KpiRun.objects.get(pk=live.pk).status == "failed" and KpiRun.objects.count() == 1


def test_kpi_runs_reap_does_what_the_beat_task_does(lease, capsys):
    dead = make_run("running", ago=500)
    call_command("kpi_runs", "--reap", "--stuck")
    out = capsys.readouterr().out
    replacement = KpiRun.objects.get(replaces=dead)
    assert f"KPI run #{dead.pk} abandoned; replaced by run #{replacement.pk}" in out
    assert "(no stuck run)" in out


# -- Redis visibility timeout ------------------------------------------------------------------
def test_the_visibility_timeout_follows_the_longest_successful_run(lease):
    lease.KPI_REAPER_SECONDS, lease.CELERY_VISIBILITY_TIMEOUT = 60, 0
    assert recovery.visibility_timeout()[0] == 10 * (120 + 60)  # nothing measured: the floor
    KpiRun.objects.create(trigger="manual", status="failed", duration_seconds=9000)
    KpiRun.objects.create(trigger="manual", status="succeeded", duration_seconds=500)
    assert recovery.visibility_timeout()[0] == 1800
    KpiRun.objects.create(trigger="manual", status="succeeded", duration_seconds=1000.2)
    seconds, how = recovery.visibility_timeout()
    assert seconds == 3001 and "longest KPI run (1000.2 s)" in how
    lease.CELERY_VISIBILITY_TIMEOUT = 7200
    assert recovery.visibility_timeout() == (7200, "CELERY_VISIBILITY_TIMEOUT")


def test_a_worker_configures_the_derived_visibility_timeout_on_redis_only(lease):
    lease.KPI_REAPER_SECONDS, lease.CELERY_VISIBILITY_TIMEOUT = 60, 0
    KpiRun.objects.create(trigger="manual", status="succeeded", duration_seconds=4000)
    app = Celery("visibility", broker="redis://127.0.0.1:6379/0", set_as_current=False)
    app.conf.broker_transport_options = {"visibility_timeout": 1800}
    assert recovery.configure_visibility_timeout(app) == 12000
    assert app.connection_for_read().transport_options["visibility_timeout"] == 12000
    files = Celery("files", broker="filesystem://", set_as_current=False)
    files.conf.broker_transport_options = {"data_folder_in": "/tmp/in"}
    assert recovery.configure_visibility_timeout(files) is None
    assert files.conf.broker_transport_options == {"data_folder_in": "/tmp/in"}
