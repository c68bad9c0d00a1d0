""" "Recompute now": a POST that queues a KPI run, and the JSON status the page polls."""

import pytest
from django.urls import reverse

from kpis.models import KpiRun
from partners.roles import StaffRole
from tests.factories import PartnerUserFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


def test_without_js_the_post_queues_a_run_and_redirects_back_with_a_status_message(client):
    client.force_login(StaffUserFactory(role=StaffRole.SALES_OPS))
    response = client.post(
        reverse("dashboards:recompute"), {"next": "/dashboard/?period=2026-03"}, follow=True
    )
    run = KpiRun.objects.get()
    assert (run.status, run.trigger) == (KpiRun.Status.QUEUED, KpiRun.Trigger.MANUAL)
    assert response.redirect_chain[-1][0] == "/dashboard/?period=2026-03"
    html = response.content.decode()
    assert f"KPI recompute #{run.pk} is queued" in html
    # While it runs the button is disabled and the page says so (and JS polls the status URL).
    assert f'data-run-url="{reverse("dashboards:run_status", args=[run.pk])}"' in html


def test_with_js_the_post_answers_the_run_and_its_status_url(client):
    client.force_login(StaffUserFactory())
    response = client.post(reverse("dashboards:recompute"), HTTP_X_REQUESTED_WITH="fetch")
    assert response.status_code == 202
    run = KpiRun.objects.get()
    assert response.json() == {
        "id": run.pk,
        "status": "queued",
        "status_url": reverse("dashboards:run_status", args=[run.pk]),
    }


def test_a_second_request_while_one_is_queued_returns_the_same_run(client):
    client.force_login(StaffUserFactory())
    client.post(reverse("dashboards:recompute"))
    client.post(reverse("dashboards:recompute"))
    assert KpiRun.objects.count() == 1


def test_status_endpoint_reports_when_the_run_has_ended(client):
    client.force_login(StaffUserFactory())
    run = KpiRun.objects.create(trigger="manual", status=KpiRun.Status.FAILED, error="database went away")
    data = client.get(reverse("dashboards:run_status", args=[run.pk])).json()
    assert (data["status"], data["done"], data["error"]) == ("failed", True, "database went away")


def test_an_open_redirect_is_refused(client):
    client.force_login(StaffUserFactory())
    response = client.post(reverse("dashboards:recompute"), {"next": "//evil.example/"})
    assert response["Location"] == reverse("dashboards:overview")


def test_partner_users_can_neither_recompute_nor_read_run_status(client):
    client.force_login(PartnerUserFactory().user)
    assert client.post(reverse("dashboards:recompute")).status_code == 403
    run = KpiRun.objects.create(trigger="manual")
    assert client.get(reverse("dashboards:run_status", args=[run.pk])).status_code == 403
    assert not KpiRun.objects.exclude(pk=run.pk).exists()
