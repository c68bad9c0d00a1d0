"""Commissions and MDF in the KPIs (docs/kpis.md, "Commissions and MDF in the KPIs"): booked costs
never counted twice with recorded ones, commission paid and rate, MDF spent and return, and the
incremental runs that must see booked costs and their links change."""

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection

from deals.models import Deal, DealRegistration
from kpis.costs import book_program_cost
from kpis.export import export_rows
from kpis.models import CostEntry, CostEntryLink, FactChange
from tests.support import kpis as t
from tests.support.api import *  # noqa: F403 - fixtures
from tests.support.api import API, error_of, ids
from tests.test_kpi_incremental import full_recompute_set, incremental
from tests.test_kpi_runs import published

pytestmark = pytest.mark.django_db

D = Decimal
COMMISSION, MDF = CostEntry.Category.COMMISSION, CostEntry.Category.MDF


def recorded(day: str, amount: str, category: str, partner=None, join_source=None) -> CostEntry:
    return CostEntry.objects.create(
        date=date.fromisoformat(day),
        amount=D(amount),
        category=category,
        partner=partner,
        join_source=join_source,
    )


def booked(reference: str, day: str, amount: str, partner, *, deals=(), registrations=()) -> CostEntry:
    commission = reference.startswith("payout:")
    return book_program_cost(
        source=CostEntry.Source.COMMISSION_PAYOUT if commission else CostEntry.Source.MDF_REIMBURSEMENT,
        reference=reference,
        date=date.fromisoformat(day),
        amount=D(amount),
        category=COMMISSION if commission else MDF,
        partner=partner,
        deal_ids=[d.pk for d in deals],
        registration_ids=[r.pk for r in registrations],
    )


def economics_program() -> dict:
    """Two partners; a's commissions booked from March, b's MDF from February (see the values in
    the test below, computed by hand)."""
    web, event = t.join_source("web"), t.join_source("event", kind="event")
    a, b = t.partner("a", web), t.partner("b", event)
    d1 = t.deal("1000.00", created="2026-01-10 10:00", closed="2026-02-10 10:00", sourced_by=a)
    d2 = t.deal("4000.00", created="2026-01-10 10:00", closed="2026-03-05 10:00")
    t.touch(d2, a, "2026-01-20 10:00")
    t.touch(d2, b, "2026-02-20 10:00")
    d3 = t.deal("3000.00", created="2026-01-12 10:00", closed="2026-03-20 10:00", sourced_by=b)
    d4 = t.deal("2000.00", created="2026-02-12 10:00", closed="2026-05-10 10:00", sourced_by=b)
    d5 = t.deal("700.00", created="2026-02-12 10:00", closed="2026-03-25 10:00", status="lost", sourced_by=b)
    reg = t.registration(b, submitted="2026-02-01 10:00", status="approved", decided="2026-02-02 10:00")
    DealRegistration.objects.filter(pk=reg.pk).update(deal=d4)
    costs = {
        "a_jan": recorded("2026-01-15", "100.00", COMMISSION, a),
        "a_mar": recorded("2026-03-31", "250.00", COMMISSION, a),
        "a_apr": recorded("2026-04-30", "260.00", COMMISSION, a),
        "a_payout": booked("payout:1", "2026-03-05", "300.00", a),
        "b_mar": recorded("2026-03-31", "50.00", COMMISSION, b),
        "a_mdf": recorded("2026-03-10", "80.00", MDF, a),
        "b_claim": booked("mdf-claim:1", "2026-02-20", "500.00", b, deals=[d3, d5], registrations=[reg]),
        "b_mdf_jan": recorded("2026-01-31", "40.00", MDF, b),
        "b_mdf_feb": recorded("2026-02-01", "60.00", MDF, b),
        "tooling": recorded("2026-03-01", "1000.00", CostEntry.Category.TOOLING),
    }
    return {"a": a, "b": b, "reg": reg, "deals": [d1, d2, d3, d4, d5], "costs": costs}


def test_recorded_commission_and_mdf_are_superseded_from_the_month_the_program_books_them():
    program = economics_program()
    counted = dict(CostEntry.objects.with_counted().values_list("pk", "counted"))
    superseded = {name for name, cost in program["costs"].items() if not counted[cost.pk]}
    # a's commissions from March (the payout's month) on; b's MDF from February; b's commission,
    # a's MDF and the tooling cost are of a kind the program has not booked for them.
    assert superseded == {"a_mar", "a_apr", "b_mdf_feb"}
    t.recompute()
    # The engine counts exactly the entries the selector flags as counted.
    assert t.value("program_cost", "2026") == sum(
        (c.amount for c in CostEntry.objects.with_counted().filter(counted=True)), D("0")
    )


def test_commission_and_mdf_metrics_computed_by_hand():
    economics_program()
    t.recompute()
    v = t.value
    # Commission paid: a's January 100 (before its first payout) and March payout 300, b's 50.
    assert [v("commission_paid", p) for p in ("2026-01", "2026-02", "2026-03", "2026-04")] == [
        D("100.00"),
        D("0.00"),
        D("350.00"),
        D("0.00"),
    ]
    assert v("commission_paid", "2026-Q1") == D("450.00")
    assert v("commission_paid", "2026-Q1", scope="partner", key="a") == D("400.00")
    assert v("commission_paid", "2026-03", scope="join_source", key="event") == D("50.00")
    # Commission rate: over attributed revenue (program: sourced 1000 + 3000 + 2000, influenced 4000).
    assert v("commission_rate", "2026-01") is None  # no attributed revenue
    assert v("commission_rate", "2026-02") == D("0.0000")
    assert v("commission_rate", "2026-03") == D("0.0500")  # 350 / 7000
    assert v("commission_rate", "2026-Q1") == D("0.0563")  # 450 / 8000 = 0.05625, half away from zero
    assert v("commission_rate", "2026") == D("0.0450")  # 450 / 10000
    # a: 1000 sourced (Feb) + 2000, its linear half of the influenced deal (Mar).
    assert v("commission_rate", "2026-Q1", scope="partner", key="a") == D("0.1333")  # 400 / 3000
    assert v("commission_rate", "2026-03", scope="partner", key="b") == D("0.0100")  # 50 / 5000
    # MDF spent: b's 40 (January, before the claim's month), the claim's 500, a's 80.
    assert [v("mdf_spent", p) for p in ("2026-01", "2026-02", "2026-03")] == [
        D("40.00"),
        D("500.00"),
        D("80.00"),
    ]
    assert v("mdf_spent", "2026-Q1", scope="partner", key="b") == D("540.00")
    # MDF return: the claim's won deals (d3 in March, d4 through the registration in May; d5 lost)
    # in their close periods, over the MDF spent in the same period.
    assert v("mdf_return", "2026-02") == D("0.0000")
    assert v("mdf_return", "2026-03") == D("37.5000")  # 3000 / 80 (a's MDF that month)
    assert v("mdf_return", "2026-05") is None  # revenue, but no MDF spent in May
    assert v("mdf_return", "2026-Q1") == D("4.8387")  # 3000 / 620
    assert v("mdf_return", "2026") == D("8.0645")  # 5000 / 620
    assert v("mdf_return", "2026-Q1", scope="partner", key="b") == D("5.5556")  # 3000 / 540
    assert v("mdf_return", "2026", scope="join_source", key="event") == D("9.2593")  # 5000 / 540
    assert v("mdf_return", "2026-03", scope="partner", key="a") == D("0.0000")
    assert v("mdf_return", "2026", scope="join_source", key="web") == D("0.0000")


def test_cac_and_roi_include_booked_costs_once():
    economics_program()
    t.recompute()
    # Q1 counted cost: 100 + 300 + 50 + 80 + 500 + 40 + 1000 = 2070 (a's March 250 and b's
    # February 60 superseded); new customers d1 (Feb) and d3 (Mar).
    assert t.value("program_cost", "2026-Q1") == D("2070.00")
    assert t.value("cac", "2026-Q1") == D("1035.00")
    assert t.value("roi", "2026-Q1") == D("0.9324")  # (4000 - 2070) / 2070
    # a: 100 + 300 + 80 = 480 and one new customer; sourced revenue 1000.
    assert t.value("cac", "2026-Q1", scope="partner", key="a") == D("480.00")
    assert t.value("roi", "2026-Q1", scope="partner", key="a") == D("1.0833")


def test_writes_to_cost_links_are_logged_as_writes_of_their_cost():
    program = economics_program()
    claim, d1 = program["costs"]["b_claim"], program["deals"][0]
    FactChange.objects.all().delete()
    link = CostEntryLink.objects.create(cost_entry=claim, deal=d1)
    assert set(FactChange.objects.values_list("source", "row_id")) == {("cost", claim.pk)}
    FactChange.objects.all().delete()
    other = program["costs"]["a_mdf"]
    CostEntryLink.objects.filter(pk=link.pk).update(cost_entry=other)
    assert set(FactChange.objects.values_list("source", "row_id")) == {("cost", claim.pk), ("cost", other.pk)}
    FactChange.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {CostEntryLink._meta.db_table} WHERE id = %s", [link.pk])
    assert set(FactChange.objects.values_list("source", "row_id")) == {("cost", other.pk)}


def _economics_edits(program: dict):
    """Each kind of change the economics metrics read, one at a time."""
    a, b, reg = program["a"], program["b"], program["reg"]
    d1, d2, d3, d4, _ = program["deals"]
    costs = program["costs"]
    claim = costs["b_claim"]
    yield "a link added", lambda: CostEntryLink.objects.create(cost_entry=claim, deal=d1)
    yield "a linked deal lost", lambda: Deal.objects.filter(pk=d3.pk).update(status="lost")
    yield "a linked deal's amount", lambda: Deal.objects.filter(pk=d1.pk).update(amount=D("1500.00"))
    yield "the registration's deal", lambda: DealRegistration.objects.filter(pk=reg.pk).update(deal=d2)
    yield "a link deleted", lambda: CostEntryLink.objects.filter(cost_entry=claim, deal=d1).delete()
    yield (
        "a payout moved",
        lambda: CostEntry.objects.filter(pk=costs["a_payout"].pk).update(date=date(2026, 4, 2)),
    )
    yield "a claim moved to a", lambda: CostEntry.objects.filter(pk=claim.pk).update(partner=a)
    yield "a second payout", lambda: booked("payout:2", "2026-01-20", "75.00", b)
    yield "the payout deleted", lambda: CostEntry.objects.filter(pk=costs["a_payout"].pk).delete()
    yield "a partner moved", lambda: type(a).objects.filter(pk=a.pk).update(join_source=b.join_source)
    yield "the claim deleted", lambda: CostEntry.objects.filter(pk=claim.pk).delete()
    yield "a linked deal deleted", lambda: Deal.objects.filter(pk=d4.pk).delete()


def _assert_each_change_equals_a_full_run() -> None:
    program = economics_program()
    first = t.recompute()
    assert first.status == "succeeded", first.error
    for name, change in _economics_edits(program):
        change()
        run = incremental()
        assert run.changed_rows, f"{name}: the facts were built in full"
        after = published()
        assert full_recompute_set() == after, name


def test_incremental_runs_after_each_economics_change_equal_full_runs():
    _assert_each_change_equals_a_full_run()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_chunked_incremental_runs_after_each_economics_change_equal_full_runs(settings):
    settings.KPI_CHUNKS = 2
    _assert_each_change_equals_a_full_run()


def test_the_cost_api_shows_source_reference_and_counted_read_only(as_manager):
    program = economics_program()
    costs = program["costs"]
    response = as_manager.get(f"{API}/costs/", {"partner": program["a"].pk, "category": "commission"})
    assert response.status_code == 200, response.content
    rows = {r["id"]: r for r in response.json()["results"]}
    payout = rows[costs["a_payout"].pk]
    assert (payout["source"], payout["reference"], payout["counted"]) == (
        "commission_payout",
        "payout:1",
        True,
    )
    assert rows[costs["a_jan"].pk]["counted"] is True
    assert (rows[costs["a_mar"].pk]["source"], rows[costs["a_mar"].pk]["counted"]) == ("recorded", False)
    superseded = as_manager.get(f"{API}/costs/", {"counted": "false"})
    assert ids(superseded) == {costs["a_mar"].pk, costs["a_apr"].pk, costs["b_mdf_feb"].pk}
    booked_only = as_manager.get(f"{API}/costs/", {"source": ["commission_payout", "mdf_reimbursement"]})
    assert ids(booked_only) == {costs["a_payout"].pk, costs["b_claim"].pk}


def test_the_cost_api_refuses_booked_sources_and_references(as_manager):
    a = economics_program()["a"]
    body = {"date": "2026-06-30", "amount": "10.00", "category": "commission", "partner": a.pk}
    for field, value in (
        ("source", "commission_payout"),
        ("source", "mdf_reimbursement"),
        ("reference", "x:1"),
    ):
        response = as_manager.post(f"{API}/costs/", {**body, field: value}, format="json")
        assert response.status_code == 400, response.content
        assert field in error_of(response)["fields"]
    created = as_manager.post(f"{API}/costs/", {**body, "source": "recorded"}, format="json")
    assert created.status_code == 201, created.content
    # A recorded commission of a in June, after its March payout: stored, listed, not counted.
    assert (created.json()["source"], created.json()["reference"], created.json()["counted"]) == (
        "recorded",
        "",
        False,
    )


def test_the_api_and_the_export_carry_the_economics_metrics(as_manager):
    economics_program()
    t.recompute()
    response = as_manager.get(
        f"{API}/kpi-values/",
        {"scope": "partner", "scope_key": "b", "metric": "mdf_return", "grain": "quarter"},
    )
    assert response.status_code == 200, response.content
    assert [(r["period"], r["value"]) for r in response.json()["results"]] == [("2026-Q1", "5.5556")]
    rows = {
        (r["scope"], r["scope_key"], r["period"], r["metric"]): r["value"]
        for r in export_rows(grain="quarter")
        if r["metric"] in ("commission_paid", "commission_rate", "mdf_spent", "mdf_return")
    }
    assert rows[("program", "", "2026-Q1", "commission_paid")] == "450.00"
    assert rows[("program", "", "2026-Q1", "commission_rate")] == "0.0563"
    assert rows[("join_source", "event", "2026-Q1", "mdf_spent")] == "540.00"
    assert rows[("program", "", "2026-Q2", "mdf_return")] == ""  # revenue but no MDF spent


def test_pages_read_mdf_return_as_a_multiple_and_the_export_as_a_rate():
    from kpis.formatting import display, export_string

    assert display("mdf_return", D("4.8387")) == "4.84×"
    assert display("commission_rate", D("0.0563")) == "5.6%"
    assert export_string("mdf_return", D("4.8387")) == "4.8387"
    assert display("mdf_return", None) == "—"


def test_the_admin_lists_source_and_counted_and_keeps_source_read_only(client):
    from django.urls import reverse

    from tests.factories import SuperUserFactory

    costs = economics_program()["costs"]
    client.force_login(SuperUserFactory())
    listing = client.get(reverse("admin:kpis_costentry_changelist"), {"source__exact": "recorded"})
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 8
    change = client.get(reverse("admin:kpis_costentry_change", args=[costs["a_payout"].pk]))
    assert change.status_code == 200
    assert "source" not in change.context["adminform"].form.fields
