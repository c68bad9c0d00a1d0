"""A real Celery worker records the changes its task makes as made by that task."""

import uuid
from datetime import timedelta

import pytest
from auditlog.models import LogEntry

from deals.models import DealRegistration
from prm.celery import app as celery_app
from tests.factories import T0, DealRegistrationFactory
from tests.test_celery_worker import celery_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.worker
def test_a_real_worker_records_the_expiry_as_made_by_the_task(tmp_path, broker):
    lapsed = DealRegistrationFactory(protection_expires_at=T0 + timedelta(days=1))
    url, options, env_extra = broker
    queue = f"audit-test-{uuid.uuid4().hex[:8]}"
    with celery_worker(tmp_path, queue, "--pool=solo", **env_extra) as worker:
        with celery_app.connection_for_write(url, transport_options=options) as conn:
            sent = celery_app.send_task("deals.tasks.expire_registrations", queue=queue, connection=conn)
        entry = wait_for(
            lambda: LogEntry.objects.get_for_object(lapsed).filter(action=LogEntry.Action.UPDATE).first(),
            60,
            "the expiry's audit entry",
            worker,
        )
    assert DealRegistration.objects.get(pk=lapsed.pk).status == DealRegistration.Status.EXPIRED
    assert entry.changes == {"status": ["submitted", "expired"]}
    assert entry.additional_data == {"channel": "task", "actor": "task:deals.tasks.expire_registrations"}
    assert entry.cid == sent.id
