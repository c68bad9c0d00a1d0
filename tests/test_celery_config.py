"""Configuring Celery, as every process does (web, worker, beat, commands), logs nothing."""

import os
import subprocess
import sys

import pytest

from tests.test_celery_worker import ROOT, child_env


@pytest.mark.parametrize("redis", [False, True])
def test_configuring_celery_logs_no_error_and_makes_the_broker_folders(tmp_path, redis):
    env = child_env(tmp_path, REDIS_URL="redis://127.0.0.1:6379/0" if redis else "")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from prm.celery import app; "
            "print(app.conf.broker_url, app.conf.broker_transport_options)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no logged error, no RecursionError traceback
    assert done.stdout.startswith("redis://" if redis else "filesystem://")
    broker_folder = tmp_path / "celery-broker"
    if redis:
        assert not broker_folder.exists()
    else:
        assert set(os.listdir(broker_folder)) == {"out", "processed", "control"}


def test_tasks_sent_by_name_are_registered_in_a_web_process(tmp_path):
    """A fresh process that only sets Django up (as gunicorn does) knows the tasks that services send
    by name (a KPI run, an import job); Celery's own autodiscovery runs only in workers and beat."""
    code = (
        "import django; django.setup(); from celery import current_app; "
        "print(sorted(n for n in current_app.tasks if not n.startswith('celery.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "kpis.tasks.recompute_kpis" in done.stdout
    assert "interchange.tasks.run_import_job" in done.stdout
