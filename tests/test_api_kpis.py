"""KPI values, recompute runs, on-request attribution, reconciliation, export, costs and targets."""

import csv
import io
import json

import pytest

from kpis.export import export_rows
from kpis.models import CostEntry, KpiRun, Target
from partners.models import PartnerUser
from tests.factories import PartnerUserFactory
from tests.support import kpis as k
from tests.support.api import *  # noqa: F403
from tests.support.api import API, client_for, count_queries, error_of, ids


@pytest.fixture
def program(db):
    """Two partners of one source. March 2026: A sources a 1000.00 win, B a 400.00 win; a direct
    2000.00 win is touched by A (influenced). A touch by B lands after its deal closed."""
    source = k.join_source("web")
    alpha = k.partner("alpha", source, joined="2026-01-05")
    bravo = k.partner("bravo", source, joined="2026-01-05")
    k.deal("1000.00", created="2026-02-01 10:00", closed="2026-03-10 10:00", sourced_by=alpha)
    k.deal("400.00", created="2026-02-01 10:00", closed="2026-03-12 10:00", sourced_by=bravo)
    influenced = k.deal("2000.00", created="2026-02-01 10:00", closed="2026-03-20 10:00")
    k.touch(influenced, alpha, "2026-03-01 09:00")
    late = k.deal("50.00", created="2026-02-01 10:00", closed="2026-03-02 10:00", sourced_by=bravo)
    k.touch(late, bravo, "2026-03-05 09:00")
    k.recompute(as_of="2026-06-30")
    return {"alpha": alpha, "bravo": bravo}


@pytest.fixture
def as_alpha(program):
    return client_for(PartnerUserFactory(partner=program["alpha"], role=PartnerUser.Role.MEMBER).user)


def _values(client, **params) -> list[dict]:
    response = client.get(f"{API}/kpi-values/", params)
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_staff_read_published_values_by_scope_metric_and_period(program, as_manager):
    rows = _values(
        as_manager,
        scope="partner",
        scope_key="alpha",
        metric="sourced_revenue",
        period_from="2026-03",
        period_to="2026-03",
    )
    assert [(r["period"], r["value"]) for r in rows] == [("2026-03", "1000.00")]
    program_rows = _values(
        as_manager, scope="program", metric="won_revenue", period_from="2026-03", period_to="2026-03"
    )
    assert [r["value"] for r in program_rows] == ["3450.00"]


def test_activated_partners_is_served_and_exported_for_program_and_join_source(program, as_manager):
    # Alpha and bravo joined on 2026-01-05 and each sourced a deal created 27 days later.
    for scope, key in (("program", ""), ("join_source", "web")):
        rows = _values(
            as_manager, scope=scope, metric="activated_partners", period_from="2026-01", period_to="2026-01"
        )
        assert [(r["scope_key"], r["value"]) for r in rows] == [(key, "2")]
    assert _values(as_manager, scope="partner", metric="activated_partners") == []
    exported = [
        (r["scope"], r["scope_key"], r["value"])
        for r in export_rows(grain="quarter")
        if r["metric"] == "activated_partners" and r["period"] == "2026-Q1"
    ]
    assert exported == [("join_source", "web", "2"), ("program", "", "2")]


def test_values_come_in_the_grain_asked_for(program, as_manager):
    rows = _values(
        as_manager,
        grain="quarter",
        scope="program",
        metric="sourced_revenue",
        period_from="2026-Q1",
        period_to="2026-Q1",
    )
    assert [(r["period"], r["value"]) for r in rows] == [("2026-Q1", "1450.00")]


def test_a_partner_user_reads_only_its_own_partners_values(program, as_alpha):
    rows = _values(as_alpha, metric="sourced_revenue", period_from="2026-03", period_to="2026-03")
    assert [(r["scope"], r["scope_key"], r["value"]) for r in rows] == [("partner", "alpha", "1000.00")]
    assert _values(as_alpha, scope="program") == []
    assert _values(as_alpha, scope_key="bravo") == []
    assert _values(as_alpha, partner=program["bravo"].pk) == []


def test_a_bad_period_or_grain_is_a_400(program, as_manager):
    response = as_manager.get(f"{API}/kpi-values/", {"period_from": "March"})
    assert response.status_code == 400
    assert "period_from" in error_of(response)["fields"]
    assert as_manager.get(f"{API}/kpi-values/", {"grain": "week"}).status_code == 400


def test_asking_for_an_unpublished_model_says_where_to_compute_it(program, as_manager):
    response = as_manager.get(f"{API}/kpi-values/", {"attribution_model": "time_decay"})
    assert response.status_code == 400
    message = error_of(response)["fields"]["attribution_model"][0]
    assert "only linear" in message and "/api/v1/kpi-attribution/?model=time_decay" in message
    assert as_manager.get(f"{API}/kpi-values/", {"attribution_model": "linear"}).status_code == 200


def test_kpi_values_cost_the_same_queries_for_few_rows_as_for_many(
    program, as_manager, as_alpha, django_assert_max_num_queries
):
    few_staff, _ = count_queries(as_manager, f"{API}/kpi-values/?metric=sourced_revenue&scope=program")
    few_partner, _ = count_queries(as_alpha, f"{API}/kpi-values/?metric=sourced_revenue")
    with django_assert_max_num_queries(few_staff):
        many = as_manager.get(f"{API}/kpi-values/?page_size=200")
    with django_assert_max_num_queries(few_partner):
        as_alpha.get(f"{API}/kpi-values/?page_size=200")
    assert len(many.json()["results"]) == 200


def test_triggering_a_recompute_answers_202_with_the_run_to_poll(program, manager, as_manager):
    response = as_manager.post(f"{API}/kpi-runs/", {"mode": "incremental"}, format="json")
    assert response.status_code == 202
    body = response.json()
    run = KpiRun.objects.get(pk=body["id"])
    assert (run.status, run.mode, run.trigger, run.requested_by) == (
        "queued",
        "incremental",
        "manual",
        manager,
    )
    assert response["Location"].endswith(f"{API}/kpi-runs/{run.pk}/")
    assert body["url"] == response["Location"]
    polled = as_manager.get(response["Location"])
    assert polled.status_code == 200
    assert polled.json()["status"] == "queued"


def test_a_second_trigger_while_one_is_queued_returns_the_same_run(program, as_manager, as_salesops):
    first = as_manager.post(f"{API}/kpi-runs/", {}, format="json").json()
    second = as_salesops.post(f"{API}/kpi-runs/", {}, format="json")
    assert second.status_code == 202
    assert second.json()["id"] == first["id"]
    assert KpiRun.objects.filter(status="queued").count() == 1


def test_staff_list_runs_newest_first(program, as_salesops):
    rows = as_salesops.get(f"{API}/kpi-runs/").json()["results"]
    assert [r["status"] for r in rows] == ["succeeded"]


def test_a_run_says_how_many_changed_rows_it_patched_its_facts_with(program, as_salesops):
    from deals.models import Deal

    Deal.objects.filter(amount="400.00").update(amount="450.00")
    k.recompute(as_of="2026-06-30", mode="incremental")
    rows = as_salesops.get(f"{API}/kpi-runs/").json()["results"]
    assert [(r["mode"], r["changed_rows"], r["periods_recomputed"]) for r in rows] == [
        ("incremental", 1, 3),
        ("full", None, 9),
    ]


def test_attribution_under_another_model_is_computed_on_request(program, as_manager, as_alpha):
    params = {"model": "first_touch", "period_from": "2026-03-01", "period_to": "2026-03-31"}
    response = as_manager.get(f"{API}/kpi-attribution/", params)
    assert response.status_code == 200, response.content
    by_key = {row["partner_key"]: row for row in response.json()["results"]}
    assert (by_key["alpha"]["sourced"], by_key["alpha"]["influenced"], by_key["alpha"]["attributed"]) == (
        "1000.00",
        "2000.00",
        "3000.00",
    )
    assert by_key["bravo"]["attributed"] == "450.00"
    own = as_alpha.get(f"{API}/kpi-attribution/", params).json()["results"]
    assert [row["partner_key"] for row in own] == ["alpha"]


def test_attribution_needs_a_valid_date_range(program, as_manager):
    response = as_manager.get(
        f"{API}/kpi-attribution/", {"period_from": "2026-04-01", "period_to": "2026-03-01"}
    )
    assert response.status_code == 400
    assert "period_to" in error_of(response)["fields"]


def test_the_reconciliation_report_lists_the_touch_after_close(program, as_salesops):
    response = as_salesops.get(f"{API}/reconciliation/")
    assert response.status_code == 200
    assert response.streaming  # the report grows with the program: streamed, never built whole
    items = json.loads(b"".join(response.streaming_content))
    assert [item["kind"] for item in items] == ["touch_after_close"]
    assert items[0]["ids"]["partner"] == program["bravo"].pk


def test_the_csv_export_streams_exactly_the_interchange_rows(program, as_salesops):
    response = as_salesops.get(f"{API}/kpi-export/", {"format": "csv", "grain": "quarter"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "scope,scope_key,period,metric,value,target_metric"
    assert rows == [{**row} for row in export_rows(grain="quarter")]
    assert {"scope": "program", "scope_key": "", "period": "2026-Q1", "metric": "sourced_revenue",
            "value": "1450.00", "target_metric": ""} in rows  # fmt: skip


def test_the_json_export_has_the_same_rows(program, as_manager):
    response = as_manager.get(f"{API}/kpi-export/", {"grain": "year"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    import json

    body = json.loads(b"".join(response.streaming_content))
    assert body == list(export_rows(grain="year"))


def test_the_export_under_another_model_is_computed_not_published(program, as_manager):
    response = as_manager.get(f"{API}/kpi-export/", {"format": "csv", "model": "last_touch"})
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    assert "attributed_revenue" in text


def test_an_unknown_export_grain_is_a_400(program, as_manager):
    response = as_manager.get(f"{API}/kpi-export/", {"grain": "week"})
    assert response.status_code == 400
    assert "grain" in error_of(response)["fields"]


def test_a_manager_records_costs_and_targets_and_partners_see_only_theirs(program, as_manager, as_alpha):
    alpha, bravo = program["alpha"], program["bravo"]
    for partner in (alpha, bravo):
        created = as_manager.post(
            f"{API}/costs/",
            {"date": "2026-03-31", "amount": "250.00", "category": "mdf", "partner": partner.pk},
            format="json",
        )
        assert created.status_code == 201, created.content
    target = as_manager.post(
        f"{API}/targets/",
        {"metric": "sourced_revenue", "period": "2026-Q2", "value": "5000", "partner": alpha.pk},
        format="json",
    )
    assert target.status_code == 201, target.content
    assert target.json()["grain"] == "quarter"
    # Costs are money: the partner's admins read theirs, its members none.
    alpha_admin = client_for(PartnerUserFactory(partner=alpha, role=PartnerUser.Role.ADMIN).user)
    assert ids(alpha_admin.get(f"{API}/costs/")) == set(
        CostEntry.objects.filter(partner=alpha).values_list("id", flat=True)
    )
    assert ids(as_alpha.get(f"{API}/targets/")) == {Target.objects.get(partner=alpha).pk}
    assert ids(alpha_admin.get(f"{API}/costs/", {"partner": bravo.pk})) == set()
    assert as_alpha.get(f"{API}/costs/").status_code == 403


def test_a_cost_must_be_positive(program, as_manager):
    response = as_manager.post(
        f"{API}/costs/", {"date": "2026-03-31", "amount": "-1", "category": "mdf"}, format="json"
    )
    assert response.status_code == 400
    assert error_of(response)["fields"]["amount"] == ["must be greater than 0"]


def test_sales_ops_cannot_record_costs(program, as_salesops):
    response = as_salesops.post(
        f"{API}/costs/", {"date": "2026-03-31", "amount": "1", "category": "mdf"}, format="json"
    )
    assert response.status_code == 403


def test_costs_are_money_a_partner_member_is_refused_and_an_admin_reads_its_own(
    world_a, as_member_a, as_admin_a
):
    from datetime import date

    from kpis.services import cost_entry_create

    cost_entry_create(date=date(2026, 3, 1), amount="12.00", category="mdf", partner=world_a.partner)
    assert as_member_a.get(f"{API}/costs/").status_code == 403
    body = as_admin_a.get(f"{API}/costs/").json()
    assert [row["amount"] for row in body["results"]] == ["12.00"]
