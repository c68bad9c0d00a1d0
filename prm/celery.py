import logging
import os
from pathlib import Path

from celery import Celery, signals

from prm.acting import track_celery_tasks

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")

app = Celery("prm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Changes a task makes are recorded as made by `task:<name>` (audit trail, notifications).
track_celery_tasks()

logger = logging.getLogger(__name__)


@app.on_after_configure.connect
def _create_filesystem_broker_folders(sender: Celery, source, **kwargs) -> None:
    # kombu's filesystem transport needs its folders to exist before the first message. The finished
    # configuration comes as `source`: reading `sender.conf` from on_configure, which Celery sends
    # while it configures, configured it again and again (a RecursionError every process logged).
    options = source.get("broker_transport_options") or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@signals.worker_init.connect
def _task_statement_timeout(sender=None, **kwargs) -> None:
    # A worker's sessions get the task statement timeout, not a web request's (prm/database.py);
    # pool processes forked later inherit the role.
    from prm.database import set_role

    set_role("task")


@signals.worker_init.connect
def _derive_visibility_timeout(sender=None, **kwargs) -> None:
    # Only a worker consumes, so only a worker needs Redis's visibility timeout; Django is set up by
    # now and the broker connection is not open yet.
    from kpis.recovery import configure_visibility_timeout

    configure_visibility_timeout(getattr(sender, "app", None) or app)
