"""Runs that recover by themselves, with real Celery workers: the whole worker killed in the middle of
a run (kill -9 of its main process and its pool), a run whose message was lost. A new worker with
beat (the reaper every second, a lease of 3 s) finishes the work, on Redis and on the filesystem
broker; the published set is exactly what a run from scratch publishes.
"""

import os
import signal
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from deals.models import Deal
from interchange.demo import DemoSize
from interchange.seeding import seed_database
from kpis.models import KpiRun, KpiValue
from prm.celery import app as celery_app
from program.models import program_today
from tests.kpi_hooks import publication_blocked
from tests.support import kpis as t
from tests.test_celery_worker import celery_worker, wait_for
from tests.test_kpi_runs import published

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# The lease the new worker's reaper applies, and the heartbeat of every worker (a setting each).
FAST_RECOVERY = {
    "KPI_RUN_HEARTBEAT_SECONDS": "1",
    "KPI_RUN_LEASE_SECONDS": "3",
    "KPI_REAPER_SECONDS": "1",
    "KPI_RUN_QUEUED_RESEND_SECONDS": "3",
}


class Output:
    """Every line a worker prints, read on a thread (a full pipe would stall the worker)."""

    def __init__(self, proc) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(proc.stdout), daemon=True)
        self.thread.start()

    def __contains__(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def tail(self) -> str:
        return "".join(self.lines[-60:])


def alive_in_group(pgid: int) -> list[int]:
    """Processes of the group that are not zombies (Linux /proc)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def send(broker, queue: str, **kwargs) -> None:
    url, options, _ = broker
    with celery_app.connection_for_write(url, transport_options=options) as conn:
        celery_app.send_task("kpis.tasks.recompute_kpis", kwargs=kwargs, queue=queue, connection=conn)


@pytest.fixture
def program():
    """A demo program with a published set, then changed: the next run has rows to write."""
    seed_database(DemoSize(partners=40, deals=700, seed=11), progress=lambda _: None)
    t.recompute(as_of=program_today().isoformat())
    Deal.objects.filter(pk__in=Deal.objects.order_by("pk").values("pk")[:100]).update(
        amount=F("amount") + Decimal("1.00")
    )
    return published()


def from_scratch(as_of) -> set[tuple]:
    """What a full run publishes over an empty set, on the data as it is now."""
    KpiValue.objects.all().delete()
    assert t.recompute(as_of=as_of.isoformat()).status == "succeeded"
    return published()


def test_a_worker_killed_whole_mid_run_is_replaced_and_a_new_worker_finishes_the_run(
    tmp_path, each_broker, program
):
    before = program
    _, _, env = each_broker
    queue = f"kpi-kill-{uuid.uuid4().hex[:8]}"
    # The first worker waits inside the publishing transaction for rows another session holds
    # (SQLite: for the database's write lock, wherever it is once running), and is killed there.
    blocked = publication_blocked(lambda: KpiRun.objects.filter(status="running").exists())
    with (
        blocked as publishing,
        celery_worker(tmp_path, queue, "--pool=prefork", "--concurrency=1", **FAST_RECOVERY, **env) as first,
    ):
        first_log = Output(first)
        send(each_broker, queue, trigger="manual", mode="full")
        run = wait_for(lambda: KpiRun.objects.filter(status="running").first(), 90, "the run to start", first)
        wait_for(publishing, 60, "the run to publish", first)
        if connection.vendor == "postgresql":
            # (SQLite: the held write lock keeps the heartbeat from committing.)
            wait_for(
                lambda: KpiRun.objects.filter(pk=run.pk, heartbeat_at__gt=F("started_at")).exists(),
                10,
                "a heartbeat",
                first,
            )
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()
        wait_for(lambda: not alive_in_group(first.pid), 10, "every process of the worker to die")
    # Nothing of the dead run is visible, and it still looks running: nobody finished it.
    assert published() == before
    run.refresh_from_db()
    assert run.status == "running" and run.queue == queue and run.celery_task_id

    with celery_worker(
        tmp_path,
        queue,
        "--pool=prefork",
        "--concurrency=1",
        "--beat",
        f"--schedule={tmp_path / 'beat-schedule'}",
        KPI_REAPER_QUEUE=queue,
        **FAST_RECOVERY,
        **env,
    ) as second:
        second_log = Output(second)
        replacement = wait_for(
            lambda: KpiRun.objects.filter(replaces=run, status__in=["succeeded", "failed"]).first(),
            300,
            "the replacement run to finish",
            second,
        )
        recovered_in = time.monotonic() - killed_at
        assert replacement.status == "succeeded", replacement.error
        after = published()
        # A late delivery of the dead run's message (Redis delivers it again after the visibility
        # timeout) and a duplicate of the replacement's find their runs finished: nothing runs twice.
        send(each_broker, queue, run_id=run.pk, trigger="manual", mode="full")
        send(each_broker, queue, run_id=replacement.pk, trigger="manual", mode="full")
        wait_for(
            lambda: sum("recompute_kpis" in line and "succeeded" in line for line in second_log.lines) >= 3,
            60,
            "the two late deliveries",
            second,
        )
        assert published() == after
    assert recovered_in < 300, f"recovered in {recovered_in:.0f} s"
    run.refresh_from_db()
    assert (run.status, run.released_by) == ("failed", "reaper"), run.error
    assert (
        run.error.startswith("abandoned: no sign of life for ")
        and f"replaced by run #{replacement.pk}" in run.error
    )
    assert (replacement.attempt, replacement.trigger, replacement.mode) == (2, "manual", "full")
    assert replacement.celery_task_id and replacement.queue == queue
    assert KpiRun.objects.count() == 3  # the baseline, the dead run, its replacement
    assert not KpiValue.objects.filter(run=run).exists()
    assert "Redis visibility timeout" in second_log or env["REDIS_URL"] == ""
    for log in (first_log, second_log):
        assert "RecursionError" not in log and "ERROR" not in log, log.tail()
    # Exactly what a run from scratch publishes on the same data.
    assert after != before
    assert after == from_scratch(replacement.as_of)


def test_a_queued_run_whose_message_was_lost_is_sent_again_and_runs(tmp_path, each_broker, program):
    _, _, env = each_broker
    queue = f"kpi-lost-{uuid.uuid4().hex[:8]}"
    # Queued for that queue long ago, its message gone (never sent, here).
    lost = KpiRun.objects.create(trigger="manual", mode="full", queue=queue)
    KpiRun.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    with celery_worker(
        tmp_path,
        queue,
        "--pool=solo",
        "--beat",
        f"--schedule={tmp_path / 'beat-schedule'}",
        KPI_REAPER_QUEUE=queue,
        **FAST_RECOVERY,
        **env,
    ) as worker:
        Output(worker)
        lost = wait_for(
            lambda: KpiRun.objects.filter(pk=lost.pk, status__in=["succeeded", "failed"]).first(),
            120,
            "the lost run to be sent again and run",
            worker,
        )
    assert lost.status == "succeeded", lost.error
    assert lost.dispatched_at is not None and lost.attempt == 1 and lost.celery_task_id
    assert KpiRun.objects.count() == 2  # the baseline and this one: sent again, not replaced
    assert published() == from_scratch(lost.as_of)
