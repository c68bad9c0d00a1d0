""" "Recompute now": a POST that queues a KPI run, and the JSON status the page polls; a stuck run
shown, and released by staff."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

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


# -- a stuck run: shown, and released by staff -------------------------------------------------
def _stuck_run(seconds: int = 600) -> KpiRun:
    run = KpiRun.objects.create(trigger="nightly", mode="incremental", status=KpiRun.Status.RUNNING)
    long_ago = timezone.now() - timedelta(seconds=seconds)
    KpiRun.objects.filter(pk=run.pk).update(started_at=long_ago, heartbeat_at=long_ago)
    run.refresh_from_db()
    return run


def test_the_overview_offers_to_release_a_stuck_run_and_only_a_stuck_one(client):
    client.force_login(StaffUserFactory())
    live = _stuck_run(seconds=5)
    html = client.get(reverse("dashboards:overview")).content.decode()
    release_url = reverse("dashboards:release_run", args=[live.pk])
    assert f'action="{release_url}" hidden>' in html and "looks stuck" not in html
    KpiRun.objects.all().delete()
    stuck = _stuck_run()
    html = client.get(reverse("dashboards:overview")).content.decode()
    release_url = reverse("dashboards:release_run", args=[stuck.pk])
    assert f'action="{release_url}">' in html
    assert f"KPI run #{stuck.pk} looks stuck: no sign of life since" in html
    assert "Release it and recompute" in html


def test_staff_release_a_stuck_run_and_a_replacement_is_queued_in_their_name(
    client, django_capture_on_commit_callbacks
):
    client.force_login(StaffUserFactory(username="opsie"))
    stuck = _stuck_run()
    with django_capture_on_commit_callbacks() as sent:
        response = client.post(
            reverse("dashboards:release_run", args=[stuck.pk]), {"next": "/dashboard/"}, follow=True
        )
    stuck.refresh_from_db()
    replacement = KpiRun.objects.get(replaces=stuck)
    assert (stuck.status, stuck.released_by) == ("failed", "dashboard user opsie")
    assert stuck.error.startswith("released by dashboard user opsie: no sign of life for 600 s")
    assert (replacement.status, replacement.trigger, replacement.mode) == ("queued", "nightly", "incremental")
    assert len(sent) == 1 and response.redirect_chain[-1][0] == "/dashboard/"
    assert (
        f"KPI run #{stuck.pk} released; KPI recompute #{replacement.pk} is queued"
        in response.content.decode()
    )


def test_with_js_the_release_answers_the_replacement_or_why_not(client):
    client.force_login(StaffUserFactory())
    live = _stuck_run(seconds=5)
    refused = client.post(reverse("dashboards:release_run", args=[live.pk]), HTTP_X_REQUESTED_WITH="fetch")
    assert refused.status_code == 409 and "not stuck" in refused.json()["error"]
    assert KpiRun.objects.get(pk=live.pk).status == "running"
    KpiRun.objects.filter(pk=live.pk).update(heartbeat_at=live.heartbeat_at - timedelta(seconds=600))
    response = client.post(reverse("dashboards:release_run", args=[live.pk]), HTTP_X_REQUESTED_WITH="fetch")
    replacement = KpiRun.objects.get(replaces=live)
    assert response.status_code == 202
    assert response.json() == {
        "id": replacement.pk,
        "status": "queued",
        "status_url": reverse("dashboards:run_status", args=[replacement.pk]),
    }


def test_the_status_of_a_stuck_run_says_so_and_where_to_release_it(client):
    client.force_login(StaffUserFactory())
    stuck = _stuck_run()
    data = client.get(reverse("dashboards:run_status", args=[stuck.pk])).json()
    assert data["stuck"] is True and data["done"] is False
    assert data["release_url"] == reverse("dashboards:release_run", args=[stuck.pk])
    assert data["stuck_reason"].startswith("no sign of life for 600 s")
    live = client.get(reverse("dashboards:run_status", args=[_stuck_run(seconds=5).pk])).json()
    assert (live["stuck"], live["release_url"], live["stuck_reason"]) == (False, None, "")


def test_a_release_of_an_unknown_or_finished_run_is_a_message_not_an_error(client):
    client.force_login(StaffUserFactory())
    response = client.post(reverse("dashboards:release_run", args=[424242]), follow=True)
    assert response.status_code == 200 and "there is no KPI run #424242" in response.content.decode()
    done = KpiRun.objects.create(trigger="manual", status=KpiRun.Status.SUCCEEDED)
    response = client.post(reverse("dashboards:release_run", args=[done.pk]), follow=True)
    assert "has finished (succeeded); nothing to release" in response.content.decode()


def test_only_staff_release_runs_by_a_post_with_a_csrf_token():
    stuck = _stuck_run()
    url = reverse("dashboards:release_run", args=[stuck.pk])
    anonymous = Client().post(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    partner = Client()
    partner.force_login(PartnerUserFactory().user)
    assert partner.post(url).status_code == 403
    staff = Client(enforce_csrf_checks=True)
    staff.force_login(StaffUserFactory())
    assert staff.get(url).status_code == 405
    assert staff.post(url).status_code == 403  # no CSRF token
    assert KpiRun.objects.get(pk=stuck.pk).status == "running" and KpiRun.objects.count() == 1
