"""The stored pipeline forecast (kpis.forecast_store): the snapshot equals the direct computation,
is written once a KPI publication commits (a real worker, and in-process), replaces the previous
one whole or not at all, and is what the pages and the API show."""

import json
import uuid
from datetime import date
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from kpis.forecast import pipeline_forecast
from kpis.forecast_store import (
    forecast_snapshot_compute,
    latest_snapshot,
    stored_forecast,
    stored_partner_forecast,
)
from kpis.models import ForecastRow, ForecastSnapshot, KpiRun
from prm.celery import app as celery_app
from tests.factories import PartnerUserFactory, StaffUserFactory
from tests.kpi_hooks import on_statement
from tests.support import kpis as kt
from tests.test_celery_worker import celery_worker, small_program, wait_for
from tests.test_insights import pipeline  # noqa: F401 - the hand-computed program, a fixture

pytestmark = pytest.mark.django_db
AS_OF, NOW = date(2026, 7, 15), "2026-07-15 12:00"


def snapshot_of_july():
    return forecast_snapshot_compute(as_of=AS_OF, now=kt.at(NOW))


def test_the_stored_snapshot_equals_the_direct_computation(pipeline):  # noqa: F811
    snapshot = snapshot_of_july()
    stored = stored_forecast(with_partners=True)
    assert stored is not None and stored.snapshot == snapshot
    assert (snapshot.quarter, snapshot.as_of, snapshot.computed_at) == ("2026-Q4", AS_OF, kt.at(NOW))
    direct = pipeline_forecast(as_of=AS_OF, now=kt.at(NOW))
    # Every number, scope and order as computed (ScopeForecast and the rest compare field by field).
    assert stored.forecast == direct
    # And by hand (tests/test_insights.py, `pipeline`): n2 3000 x 2/5; h4 600 x 1/2.
    program = stored.forecast.program
    assert (program.sourced, program.influenced) == (Decimal("1200.00"), Decimal("300.00"))
    assert [(r.segment, r.bucket, r.won, r.open) for r in stored.forecast.rates] == [
        ("sourced", 0, 2, 4),
        ("sourced", 2, 0, 1),
        ("influenced", 1, 1, 2),
    ]
    assert [(b.quarter, b.forecast_sourced, b.actual_sourced) for b in stored.forecast.backtest][-1] == (
        "2026-Q2",
        Decimal("1050.00"),
        Decimal("1000.00"),
    )
    alpha = ForecastRow.objects.get(snapshot=snapshot, scope="partner", scope_id=pipeline["alpha"].pk)
    assert (alpha.position, alpha.sourced, alpha.backtest_sourced, alpha.actual_sourced) == (
        0,
        Decimal("1200.00"),
        Decimal("1050.00"),
        Decimal("1500.00"),
    )
    _, bravo = stored_partner_forecast(pipeline["bravo"])
    assert (bravo.name, bravo.sourced, bravo.influenced) == ("Bravo", Decimal("0.00"), Decimal("300.00"))


def test_a_failed_computation_leaves_the_previous_snapshot_whole(pipeline):  # noqa: F811
    first = snapshot_of_july()

    def stored_rows():
        return list(ForecastRow.objects.filter(snapshot=first).values_list("scope", "scope_id", "sourced"))

    rows = stored_rows()
    kt.deal("9000.00", created="2026-07-12 09:00", sourced_by=pipeline["alpha"])

    def fail(sql):
        raise DatabaseError("disk full")

    # The new snapshot's row is written, then writing its scopes fails: none of it stays.
    with on_statement(r'INSERT INTO "kpis_forecastrow"', fail), pytest.raises(DatabaseError):
        snapshot_of_july()
    assert list(ForecastSnapshot.objects.values_list("pk", flat=True)) == [first.pk]
    assert latest_snapshot() == first
    assert stored_rows() == rows
    assert stored_forecast().forecast.program.sourced == Decimal("1200.00")
    # The next computation that succeeds replaces it: the new deal, 31-90 days on 10-01 (pool 2/5).
    assert snapshot_of_july().pk != first.pk
    assert stored_forecast().forecast.program.sourced == Decimal("4800.00")


def test_only_the_latest_snapshots_are_kept(pipeline, settings):  # noqa: F811
    settings.FORECAST_SNAPSHOTS_KEPT = 2
    made = [snapshot_of_july().pk for _ in range(3)]
    assert list(ForecastSnapshot.objects.order_by("pk").values_list("pk", flat=True)) == made[1:]
    assert not ForecastRow.objects.filter(snapshot_id=made[0]).exists()


def test_a_publication_stores_the_forecast_once_it_commits(
    pipeline,  # noqa: F811
    eager_tasks,
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        run = kt.recompute()
    assert run.status == "succeeded"
    snapshot = latest_snapshot()
    assert snapshot is not None and snapshot.run_id == run.pk
    # Computed as of today from the deals open now: the same as the direct computation then.
    direct = pipeline_forecast(as_of=snapshot.as_of, now=snapshot.computed_at)
    assert stored_forecast(with_partners=True).forecast == direct
    # A redelivered task stores nothing more.
    assert forecast_snapshot_compute(run_id=run.pk) == snapshot
    assert ForecastSnapshot.objects.count() == 1


def test_the_pages_show_the_snapshot_with_its_date(client, pipeline):  # noqa: F811
    snapshot = snapshot_of_july()
    client.force_login(StaffUserFactory())
    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("dashboards:forecast"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "As of 15 Jul 2026, computed 15 Jul 2026, 12:00" in text
    assert [r.name for r in page.context["rows"]] == ["Alpha", "Bravo"]
    # Nothing reads the deals: the page reads the snapshot (no statement touches deals_deal).
    assert not [q for q in queries.captured_queries if "deals_deal" in q["sql"]]
    client.force_login(PartnerUserFactory(partner=pipeline["alpha"]).user)
    portal = client.get(reverse("portal:forecast"))
    assert portal.context["own"].sourced == Decimal("1200.00")
    assert "computed 15 Jul 2026, 12:00" in portal.content.decode()
    assert snapshot.rows.count() == 5  # the program, two join sources, two partners


def test_without_a_snapshot_the_pages_say_so_and_ask_for_one(
    client,
    pipeline,  # noqa: F811
    eager_tasks,
    django_capture_on_commit_callbacks,
):
    from tests.support.api import client_for

    client.force_login(StaffUserFactory())
    with django_capture_on_commit_callbacks(execute=True) as sent:
        page = client.get(reverse("dashboards:forecast"))
    assert page.status_code == 200
    assert "has not been computed yet" in page.content.decode()
    assert len(sent) == 1 and latest_snapshot() is not None  # the task ran (eagerly here)
    ForecastSnapshot.objects.all().delete()
    # Asked for at most once per few minutes, whoever asks.
    api = client_for(StaffUserFactory())
    with django_capture_on_commit_callbacks(execute=False) as sent:
        response = api.get("/api/v1/kpi-forecast/")
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert response.json()["error"]["code"] == "not_computed"
    assert sent == []
    client.force_login(PartnerUserFactory(partner=pipeline["bravo"]).user)
    portal = client.get(reverse("portal:forecast"))
    assert portal.status_code == 200 and "has not been computed yet" in portal.content.decode()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_stores_the_forecast_after_the_nightly_publication(tmp_path, broker):
    small_program()
    kt.deal("800.00", created="2026-01-20 10:00", sourced_by=kt.partner("b", kt.join_source("event")))
    url, options, env_extra = broker
    queue = f"kpi-test-{uuid.uuid4().hex[:8]}"
    with celery_worker(tmp_path, queue, "--pool=solo", **env_extra) as worker:
        nightly = settings.CELERY_BEAT_SCHEDULE["recompute-kpis-nightly"]
        with celery_app.connection_for_write(url, transport_options=options) as conn:
            celery_app.send_task(nightly["task"], kwargs=nightly["kwargs"], queue=queue, connection=conn)
        snapshot = wait_for(
            lambda: ForecastSnapshot.objects.first(), 120, "the forecast after the publication", worker
        )
    run = KpiRun.objects.get()
    assert (run.status, run.trigger, snapshot.run_id) == ("succeeded", "nightly", run.pk)
    direct = pipeline_forecast(as_of=snapshot.as_of, now=snapshot.computed_at)
    assert stored_forecast(with_partners=True).forecast == direct
    assert snapshot.rows.filter(scope="partner", name="B").exists()  # its open deal


def test_a_run_with_nothing_to_do_still_stores_the_missing_forecast(
    pipeline,  # noqa: F811
    eager_tasks,
    django_capture_on_commit_callbacks,
):
    first = kt.recompute(as_of="2026-12-31")
    with django_capture_on_commit_callbacks(execute=True) as sent:
        nothing = kt.recompute(as_of="2026-12-31", mode="incremental")
    assert (nothing.status, nothing.rows_written, nothing.source_fingerprint) == (
        "succeeded",
        0,
        first.source_fingerprint,
    )  # the nightly shortcut: nothing changed since the first run
    assert len(sent) == 1 and latest_snapshot().run_id == nothing.pk
    with django_capture_on_commit_callbacks(execute=True) as sent:
        kt.recompute(as_of="2026-12-31", mode="incremental")
    assert sent == [] and ForecastSnapshot.objects.count() == 1  # that day's forecast is there


def test_the_command_stores_a_snapshot_after_the_last_publication(pipeline):  # noqa: F811
    from io import StringIO

    from django.core.management import call_command

    run = kt.recompute()
    out = StringIO()
    call_command("compute_forecast", stdout=out)
    snapshot = latest_snapshot()
    assert snapshot.run_id == run.pk and snapshot.rows.count() == 5
    assert out.getvalue().startswith(
        f"Forecast #{snapshot.pk} {snapshot.quarter}, as of {snapshot.as_of}: 5 scopes"
    )
    # The publication's task, delivered after it, finds the snapshot stored.
    assert forecast_snapshot_compute(run_id=run.pk) == snapshot


def test_the_api_gives_the_snapshot_as_the_serializer_would(pipeline):  # noqa: F811
    from api.views.insights import ForecastSerializer
    from tests.support.api import client_for

    snapshot = snapshot_of_july()
    response = client_for(StaffUserFactory()).get("/api/v1/kpi-forecast/")
    assert response.status_code == 200
    body = response.json()
    direct = pipeline_forecast(as_of=AS_OF, now=kt.at(NOW))
    # Both partners fit on the first page (50 by default).
    page = {"count": 2, "next": None, "previous": None}
    assert body == {**page, **json.loads(json.dumps(ForecastSerializer(direct).data))}
    alpha = body["partners"][0]
    assert (alpha["name"], alpha["sourced"], alpha["backtest_sourced"], alpha["error_sourced"]) == (
        "Alpha",
        "1200.00",
        "1050.00",
        "-30.0",
    )
    assert body["partners"][1]["error_influenced"] is None  # Bravo: nothing influenced was won
    assert response["Last-Modified"] == "Wed, 15 Jul 2026 12:00:00 GMT" and snapshot.computed_at == kt.at(NOW)
