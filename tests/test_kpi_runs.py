"""Runs: atomic publication, reruns, incremental vs full, locking, query counts, export, targets."""

import csv
from datetime import date
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError

from deals.models import Deal
from kpis import services
from kpis.export import export_rows
from kpis.models import KpiRun, KpiValue
from kpis.selectors import kpi_card_values, kpi_series
from kpis.services import kpi_recompute_request, kpi_run_create, reconciliation_report, target_set
from partners.models import JoinSource
from tests.kpi_hooks import failing_kpi_writes
from tests.support import kpis as t

pytestmark = pytest.mark.django_db

D = Decimal


def published() -> set[tuple]:
    return set(
        KpiValue.objects.values_list(
            "attribution_model", "scope", "scope_key", "grain", "period", "metric", "target_metric", "value"
        )
    )


def small_program(partners: int = 2, deals_per_partner: int = 2):
    web = t.join_source("web")
    made = []
    for i in range(partners):
        p = t.partner(f"p{i}", web, joined="2026-01-05")
        t.registration(p, submitted="2026-01-10 10:00", status="approved", decided="2026-01-11 10:00")
        for j in range(deals_per_partner):
            d = t.deal(
                f"{100 + j}.00",
                created="2026-01-15 10:00",
                closed=f"2026-0{2 + j % 3}-10 10:00",
                sourced_by=p,
            )
            other = t.deal("40.00", created="2026-01-15 10:00", closed="2026-03-01 10:00")
            t.touch(other, p, "2026-02-01 10:00")
            made.append(d)
    return made


def test_rerunning_on_unchanged_data_writes_nothing_and_keeps_every_value():
    small_program()
    first = t.recompute()
    before = published()
    assert first.rows_written == len(before) > 0
    second = t.recompute()
    assert second.status == "succeeded" and second.rows_written == 0 and second.rows_deleted == 0
    assert published() == before


def test_a_run_that_fails_while_publishing_leaves_the_published_set_unchanged():
    deals = small_program()
    t.recompute()
    before = published()
    Deal.objects.filter(pk=deals[0].pk).update(amount=D("999.00"))
    run, _ = kpi_run_create(trigger="manual")
    # The publication's update of a changed row fails, after it deleted the rows that vanished.
    with failing_kpi_writes("no space left on device"), pytest.raises(DatabaseError):
        services.kpi_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "no space left on device" in run.error
    assert published() == before

    rerun = t.recompute()
    assert rerun.status == "succeeded" and rerun.rows_written > 0
    assert t.value("sourced_revenue", "2026-02", scope="partner", key="p0") == D("999.00")


def published_rows() -> dict[tuple, tuple]:
    """{key: (id, value, run id)} of every published row."""
    key = ("attribution_model", "scope", "scope_key", "grain", "period", "metric", "target_metric")
    return {row[:7]: row[7:] for row in KpiValue.objects.values_list(*key, "id", "value", "run_id")}


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_a_changed_value_is_updated_in_place_and_a_row_no_longer_computed_is_deleted(mode):
    deals = small_program()
    first = t.recompute()
    before = published_rows()
    Deal.objects.filter(pk=deals[0].pk).update(amount=D("150.00"))
    run = t.recompute(mode=mode)
    after = published_rows()
    changed = {key for key in before if after[key][1] != before[key][1]}
    assert after.keys() == before.keys() and run.rows_deleted == 0
    assert run.rows_written == len(changed) > 0
    # Same rows (ids), the new values and the run that wrote them; the others untouched.
    assert all(after[key] == (before[key][0], after[key][1], run.pk) for key in changed)
    assert all(after[key] == before[key] for key in before.keys() - changed)
    assert t.value("sourced_revenue", "2026-02", scope="partner", key="p0") == D("150.00")

    # A renamed join source's rows are published under the new key: the old ones are deleted.
    JoinSource.objects.filter(key="web").update(key="website")
    renamed = t.recompute(mode=mode)
    web = {key for key in after if key[1] == "join_source"}
    assert web and all(key[2] == "web" for key in web)
    assert renamed.rows_deleted == len(web) and renamed.rows_written == len(web)
    assert {key[:2] + ("website",) + key[3:] for key in web} == {
        key for key in published_rows() if key[1] == "join_source"
    }
    assert first.rows_written == len(before)


def test_incremental_after_changes_equals_a_full_recompute():
    deals = small_program(partners=3)
    t.recompute()
    # Change, move to another month, lose, delete, and add facts.
    Deal.objects.filter(pk=deals[0].pk).update(amount=D("5.00"))
    Deal.objects.filter(pk=deals[1].pk).update(closed_at=t.at("2026-05-20 10:00"))
    Deal.objects.filter(pk=deals[2].pk).update(status="lost")
    Deal.objects.filter(pk=deals[3].pk).delete()
    t.deal("77.00", created="2026-04-01 00:00", closed="2026-04-02 00:00")
    incremental = t.recompute(mode="incremental")
    assert incremental.status == "succeeded" and incremental.periods_recomputed > 0
    after_incremental = published()
    KpiValue.objects.all().delete()
    t.recompute(mode="full")
    assert published() == after_incremental


def test_an_incremental_run_with_nothing_changed_does_nothing():
    small_program()
    t.recompute()
    run = t.recompute(mode="incremental")
    assert run.status == "succeeded" and run.periods_recomputed == 0 and run.rows_written == 0


def test_the_number_of_queries_does_not_grow_with_partners_or_deals(django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    small_program(partners=1, deals_per_partner=1)
    t.recompute()  # each measured run then replaces a previous run's state, as in production
    KpiValue.objects.all().delete()
    with CaptureQueriesContext(connection) as small:
        t.recompute()
    small_program_count = len(small.captured_queries)
    KpiValue.objects.all().delete()
    for i in range(12):
        source = t.join_source(f"s{i}")
        for j in range(3):
            p = t.partner(f"x{i}-{j}", source)
            d = t.deal("10.00", created="2026-01-15 10:00", closed="2026-02-10 10:00", sourced_by=p)
            t.touch(d, p, "2026-01-20 10:00")
    with django_assert_max_num_queries(small_program_count):
        t.recompute()


def test_a_request_while_a_run_is_active_returns_that_run(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        first = kpi_recompute_request(trigger="manual")
        again = kpi_recompute_request(trigger="nightly", mode="incremental")
    assert again.pk == first.pk and first.status == "queued"
    assert len(callbacks) == 1  # only the first request enqueues a task
    assert KpiRun.objects.count() == 1


def test_a_queued_run_executes_once():
    small_program()
    run, _ = kpi_run_create(trigger="manual")
    assert services.kpi_run_execute(run_id=run.pk).status == "succeeded"
    # A duplicate delivery of the same task finds the run finished and does nothing.
    again = services.kpi_run_execute(run_id=run.pk)
    assert again.status == "succeeded" and again.finished_at == KpiRun.objects.get(pk=run.pk).finished_at


def test_a_bad_trigger_is_refused_with_a_field_error():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as err:
        kpi_recompute_request(trigger="cron")
    assert "trigger" in err.value.message_dict


def test_recompute_command_runs_synchronously_and_prints_a_summary(capsys):
    small_program()
    call_command("recompute_kpis", "--trigger", "command", "--as-of", "2026-12-31")
    out = capsys.readouterr().out
    assert "succeeded" in out and "rows written" in out
    run = KpiRun.objects.get()
    assert run.trigger == "command" and run.status == "succeeded" and run.as_of == date(2026, 12, 31)


def test_recompute_command_refuses_while_another_run_is_active():
    kpi_run_create(trigger="manual")
    with pytest.raises(CommandError, match="already queued"):
        call_command("recompute_kpis")


def test_targets_give_progress_per_metric_period_and_scope():
    small_program()
    target_set(metric="sourced_revenue", period="2026-02", value="400")
    target_set(metric="sourced_revenue", period="2026-Q1", value="1000", partner=None)
    web_partner = KpiValue  # noqa: F841 - readability of the next line
    from partners.models import Partner

    target_set(metric="leads_generated", period="2026-01", value="4", partner=Partner.objects.get(key="p1"))
    t.recompute()
    rows = {
        (v.scope_key, v.period, v.metric, v.target_metric): v.value
        for v in KpiValue.objects.filter(metric__in=["target", "target_progress"])
    }
    # Feb sourced: p0 100 + p1 100 = 200 of 400; Q1: 200 + Mar 101 * 2 = 402 of 1000.
    assert rows[("", "2026-02", "target", "sourced_revenue")] == D("400.0000")
    assert rows[("", "2026-02", "target_progress", "sourced_revenue")] == D("0.5000")
    assert rows[("", "2026-Q1", "target_progress", "sourced_revenue")] == D("0.4020")
    assert rows[("p1", "2026-01", "target_progress", "leads_generated")] == D("0.2500")


def test_card_values_bring_previous_last_year_and_target():
    small_program()
    target_set(metric="sourced_revenue", period="2026-03", value="404")
    t.recompute()
    cards = kpi_card_values(metrics=["sourced_revenue", "win_rate_sourced"], grain="month", period="2026-03")
    assert cards["sourced_revenue"]["current"] == D("202.0000")
    assert cards["sourced_revenue"]["previous"] == D("200.0000")
    assert cards["sourced_revenue"]["last_year"] == D("0")
    assert cards["sourced_revenue"]["target"] == D("404.0000")
    assert cards["sourced_revenue"]["target_progress"] == D("0.5000")
    assert cards["win_rate_sourced"]["last_year"] is None
    partner_cards = kpi_card_values(
        metrics=["sourced_revenue"], grain="month", period="2026-05", scope="partner", scope_key="p0"
    )
    assert partner_cards["sourced_revenue"]["current"] == D("0")
    series = kpi_series(
        metrics=["sourced_revenue"], grain="month", period_from="2026-02", period_to="2026-03"
    )
    assert [(p["period"], p["value"], p["previous"]) for p in series["sourced_revenue"]] == [
        ("2026-02", D("200.0000"), D("0.0000")),
        ("2026-03", D("202.0000"), D("200.0000")),
    ]


def test_export_writes_interchange_columns_with_formatted_values(tmp_path):
    small_program()
    target_set(metric="win_rate_sourced", period="2026-02", value="0.5")
    t.recompute()
    out = tmp_path / "kpis.csv"
    call_command("export_kpis", "--out", str(out), "--grain", "month")
    rows = list(csv.DictReader(out.open(newline="")))
    assert list(rows[0]) == ["scope", "scope_key", "period", "metric", "value", "target_metric"]
    by_key = {
        (r["scope"], r["scope_key"], r["period"], r["metric"], r["target_metric"]): r["value"] for r in rows
    }
    assert by_key[("program", "", "2026-02", "sourced_revenue", "")] == "200.00"
    assert by_key[("program", "", "2026-02", "win_rate_sourced", "")] == "1.0000"
    assert by_key[("program", "", "2026-02", "sales_cycle_median_days_sourced", "")] == "26.0"
    assert by_key[("program", "", "2026-02", "leads_generated", "")] == "0"
    assert by_key[("program", "", "2026-02", "cac", "")] == "0.00"
    assert by_key[("program", "", "2026-02", "roi", "")] == ""
    assert by_key[("program", "", "2026-02", "target", "win_rate_sourced")] == "0.5000"
    assert by_key[("partner", "p0", "2026-02", "sourced_revenue", "")] == "100.00"


def test_export_under_another_model_is_computed_on_request_and_not_published():
    web = t.join_source("web")
    a, b = t.partner("a", web), t.partner("b", web)
    d = t.deal("90.00", created="2026-03-01 00:00", closed="2026-03-20 00:00")
    t.touch(d, a, "2026-03-02 00:00")
    t.touch(d, b, "2026-03-03 00:00")
    t.recompute()
    rows = {
        (r["scope_key"], r["metric"]): r["value"]
        for r in export_rows(grain="month", model="first_touch")
        if r["period"] == "2026-03" and r["scope"] == "partner"
    }
    assert rows[("a", "attributed_revenue")] == "90.00"
    assert ("b", "attributed_revenue") not in rows
    assert t.value("attributed_revenue", "2026-03", scope="partner", key="b") == D("45.00")
    assert not KpiValue.objects.filter(attribution_model="first_touch").exists()


def test_the_reconciliation_report_lists_suspicious_facts_from_the_run():
    web = t.join_source("web")
    early = t.partner("early", web, joined="2026-03-01")
    d = t.deal("10.00", created="2026-02-01 00:00", closed="2026-03-10 00:00", sourced_by=early)
    late = t.touch(d, early, "2026-03-11 00:00")
    other = t.partner("other", web)
    acct = t.account("shared")
    r1 = t.registration(early, submitted="2026-03-01 00:00", acct=acct)
    r2 = t.registration(
        other, submitted="2026-03-02 00:00", acct=acct, status="approved", decided="2026-03-03 00:00"
    )
    t.recompute()
    report = reconciliation_report()
    kinds = {item["kind"]: item for item in report}
    assert kinds["sourced_before_joined"]["ids"] == {
        "deal": d.pk,
        "partner": early.pk,
        "account": d.account_id,
    }
    assert kinds["touch_after_close"]["ids"]["touch"] == late.pk
    assert kinds["duplicate_registration_claim"]["ids"]["registrations"] == [r1.pk, r2.pk]
    assert len(report) == 3
    assert all(item["description"] for item in report)


def test_the_run_admin_recompute_now_action_queues_a_run(client, django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456789")
    client.force_login(admin)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post("/admin/kpis/kpirun/", {"action": "recompute_now"}, follow=True)
    assert response.status_code == 200
    run = KpiRun.objects.get()
    assert run.status == "queued" and run.trigger == "manual" and run.requested_by == admin
    assert len(callbacks) == 1
    assert client.get("/admin/kpis/kpivalue/").status_code == 200
    assert client.get(f"/admin/kpis/kpirun/{run.pk}/change/").status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_fingerprint_is_computed_alongside_a_run_with_changes_and_lets_the_next_one_skip(monkeypatch):
    import threading

    from kpis.engine import fingerprint

    computed_on = []
    source_fingerprint = fingerprint.source_fingerprint

    def spy(**kwargs):
        computed_on.append(threading.current_thread().name)
        return source_fingerprint(**kwargs)

    monkeypatch.setattr(fingerprint, "source_fingerprint", spy)
    deals = small_program()
    first = t.recompute()
    # The log held the program's rows: no run could be skipped, so the facts did not wait for it.
    assert computed_on == ["kpi-fingerprint"]
    assert first.source_fingerprint == source_fingerprint(as_of=first.as_of)
    skipped = t.recompute(mode="incremental")
    assert computed_on[1:] == [threading.current_thread().name]
    assert skipped.periods_recomputed == 0 and skipped.changed_rows is None
    assert skipped.source_fingerprint == first.source_fingerprint

    deal = deals[0]
    deal.amount = D("150.00")
    deal.save()  # a new updated_at
    changed = t.recompute(mode="incremental")
    assert computed_on[2:] == ["kpi-fingerprint"] and changed.changed_rows == 1
    assert changed.source_fingerprint not in ("", first.source_fingerprint)
    assert t.recompute(mode="incremental").periods_recomputed == 0
