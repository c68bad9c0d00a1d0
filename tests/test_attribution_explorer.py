"""The attribution explorer a page at a time: sorted, paged and totalled in the database from the
rows stored once per published run (kpis.explorer), with a CSV of every row, and its API."""

import csv
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboards import attribution_views
from kpis.models import ExplorerPeriod, ExplorerRow
from partners.roles import StaffRole
from tests.factories import PartnerUserFactory, StaffUserFactory, SuperUserFactory
from tests.support import kpis as kt
from tests.support.api import client_for

pytestmark = pytest.mark.django_db

URL = reverse("dashboards:attribution")
MARCH = {"grain": "month", "period": "2026-03"}


def _march(publish: bool = True):
    """Won in March 2026 (linear is the program's model):
    - $1,000 sourced by Alpha;
    - $1,000 touched by Alpha, Bravo, Alpha (first/last touch: Alpha; linear 666.67/333.33;
      position based 800/200);
    - $500 touched by Charlie only; $200 sourced by Delta.
    Not in March: $300 sourced by Charlie won in April, $900 sourced by Bravo still open."""
    web = kt.join_source("web")
    alpha, bravo, charlie, delta = (kt.partner(k, web) for k in ("alpha", "bravo", "charlie", "delta"))
    kt.deal("1000.00", created="2026-03-01 09:00", closed="2026-03-20 09:00", sourced_by=alpha)
    two = kt.deal("1000.00", created="2026-03-01 09:00", closed="2026-03-20 09:00")
    kt.touch(two, alpha, "2026-03-02 09:00")
    kt.touch(two, bravo, "2026-03-05 09:00")
    kt.touch(two, alpha, "2026-03-10 09:00", kind="technical")
    one = kt.deal("500.00", created="2026-03-01 09:00", closed="2026-03-25 09:00")
    kt.touch(one, charlie, "2026-03-03 09:00")
    kt.deal("200.00", created="2026-03-01 09:00", closed="2026-03-15 09:00", sourced_by=delta)
    kt.deal("300.00", created="2026-03-01 09:00", closed="2026-04-02 09:00", sourced_by=charlie)
    kt.deal("900.00", created="2026-03-01 09:00", sourced_by=bravo)
    if publish:
        kt.recompute(as_of="2026-04-30")
    return alpha, bravo, charlie, delta


def _figures(row) -> tuple:
    m = row.models
    return (
        row.partner_key,
        str(row.sourced),
        str(row.influenced),
        str(m["first_touch"]),
        str(m["last_touch"]),
        str(m["linear"]),
        str(m["position_based"]),
    )


EXPECTED = {
    "alpha": ("alpha", "1000.00", "1000.00", "2000.00", "2000.00", "1666.67", "1800.00"),
    "bravo": ("bravo", "0.00", "1000.00", "0.00", "0.00", "333.33", "200.00"),
    "charlie": ("charlie", "0.00", "500.00", "500.00", "500.00", "500.00", "500.00"),
    "delta": ("delta", "200.00", "0.00", "200.00", "200.00", "200.00", "200.00"),
}


@pytest.fixture
def manager(client):
    client.force_login(StaffUserFactory())
    return client


def _keys(response) -> list[str]:
    return [r.partner_key for r in response.context["rows"]]


def test_a_publication_stores_the_range_the_explorer_opens_on(
    manager, eager_tasks, django_capture_on_commit_callbacks
):
    alpha, bravo, charlie, delta = _march(publish=False)
    with django_capture_on_commit_callbacks(execute=True):
        run = kt.recompute(as_of="2026-04-30")
    # The page without parameters opens on the newest complete published month: April 2026,
    # where only Charlie's $300 was won (sourced).
    stored = ExplorerPeriod.objects.get()
    assert (stored.run_id, str(stored.period_from), str(stored.period_to)) == (
        run.pk,
        "2026-04-01",
        "2026-04-30",
    )
    assert [(r.partner_id, r.sourced) for r in ExplorerRow.objects.filter(sourced__gt=0)] == [
        (charlie.pk, 30000)
    ]
    response = manager.get(URL)
    assert response.context["period"].label == "2026-04"
    assert [(r.partner_key, str(r.sourced)) for r in response.context["rows"] if r.sourced] == [
        ("charlie", "300.00")
    ]
    assert ExplorerPeriod.objects.count() == 1  # the page read the stored rows


@pytest.mark.parametrize("publish", [True, False], ids=["published", "before-any-publication"])
def test_each_partner_s_figures_under_each_model_and_the_totals_over_all_pages(manager, publish, monkeypatch):
    _march(publish)
    monkeypatch.setattr(attribution_views, "PAGE_SIZE", 3)
    first = manager.get(URL, MARCH)
    second = manager.get(URL, {**MARCH, "page": 2})
    # The program's model (linear), largest first, by default.
    assert _keys(first) + _keys(second) == ["alpha", "charlie", "bravo", "delta"]
    rows = [*first.context["rows"], *second.context["rows"]]
    assert [_figures(r) for r in rows] == [EXPECTED[k] for k in ("alpha", "charlie", "bravo", "delta")]
    # Time decay gives Alpha's two touches more than Bravo's one; every model splits each deal whole.
    td = {r.partner_key: r.models["time_decay"] for r in rows}
    assert td["alpha"] - Decimal("1000.00") > td["bravo"] and td["alpha"] + td["bravo"] == Decimal("2000.00")
    total = first.context["total"]
    assert total.count == 4
    assert (str(total.sourced), str(total.influenced)) == ("1200.00", "1500.00")
    assert [str(t) for t in first.context["totals"]] == ["2700.00"] * 5
    # The totals are those of every page's rows, whichever page is shown.
    assert second.context["total"] == total
    for i, model in enumerate(first.context["models"]):
        assert sum(r.models[model] for r in rows) == first.context["totals"][i]
    assert sum(r.sourced for r in rows) == total.sourced
    html = first.content.decode()
    assert "Page 1 of 2" in html and "$1,666.67" in html and "Total, all 4" in html
    assert "$2,700.00" in html and "$1,500.00" in html


@pytest.mark.parametrize(
    ("sort", "direction", "order"),
    [
        ("partner", "asc", ["alpha", "bravo", "charlie", "delta"]),
        ("partner", "desc", ["delta", "charlie", "bravo", "alpha"]),
        ("sourced", "desc", ["alpha", "delta", "bravo", "charlie"]),  # ties by name
        ("sourced", "asc", ["bravo", "charlie", "delta", "alpha"]),
        ("influenced", "desc", ["alpha", "bravo", "charlie", "delta"]),
        ("first_touch", "desc", ["alpha", "charlie", "delta", "bravo"]),
        ("last_touch", "asc", ["bravo", "delta", "charlie", "alpha"]),
        ("linear", "asc", ["delta", "bravo", "charlie", "alpha"]),
        ("time_decay", "desc", ["alpha", "charlie", "bravo", "delta"]),  # Bravo: a third or so of $1,000
        ("position_based", "desc", ["alpha", "charlie", "bravo", "delta"]),
    ],
)
@pytest.mark.parametrize("publish", [True, False], ids=["published", "before-any-publication"])
def test_every_column_sorts_all_rows_before_paging(manager, monkeypatch, publish, sort, direction, order):
    _march(publish)
    monkeypatch.setattr(attribution_views, "PAGE_SIZE", 2)
    pages = [manager.get(URL, {**MARCH, "sort": sort, "direction": direction, "page": n}) for n in (1, 2)]
    assert _keys(pages[0]) + _keys(pages[1]) == order
    assert pages[0].context["sort_links"][sort]["aria_sort"] == (
        "descending" if direction == "desc" else "ascending"
    )


def test_the_csv_holds_every_row_in_the_page_s_order(manager, monkeypatch):
    _march()
    monkeypatch.setattr(attribution_views, "PAGE_SIZE", 1)
    response = manager.get(URL, {**MARCH, "sort": "partner", "direction": "asc", "format": "csv"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == list(attribution_views.CSV_HEADER)
    body = [(r[1], r[4], r[5], r[6], r[7], r[8], r[10]) for r in rows[1:]]
    assert body == [EXPECTED[k] for k in ("alpha", "bravo", "charlie", "delta")]
    assert {r[3] for r in rows[1:]} == {"2026-03"}
    # The time decay column too: the page shows the same figures.
    page = manager.get(URL, {**MARCH, "sort": "partner", "direction": "asc"})
    assert rows[1][9] == str(page.context["rows"][0].models["time_decay"])


def test_the_program_model_column_is_the_published_kpi(manager):
    alpha, bravo, charlie, delta = _march()
    response = manager.get(URL, {**MARCH, "sort": "partner", "direction": "asc"})
    for row in response.context["rows"]:
        key = row.partner_key
        assert row.models["linear"] == kt.value("attributed_revenue", "2026-03", scope="partner", key=key)
        assert row.sourced == (kt.value("sourced_revenue", "2026-03", scope="partner", key=key) or 0)
    total = response.context["total"]
    assert total.sourced == kt.value("sourced_revenue", "2026-03")
    assert total.influenced == kt.value("influenced_revenue", "2026-03")


@pytest.mark.parametrize("role", [StaffRole.PARTNER_MANAGER, StaffRole.SALES_OPS, "superuser"])
def test_every_staff_role_sees_the_same_page(client, role):
    _march()
    user = SuperUserFactory() if role == "superuser" else StaffUserFactory(role=role)
    client.force_login(user)
    response = client.get(URL, {**MARCH, "sort": "partner", "direction": "asc"})
    assert response.status_code == 200
    assert [_figures(r) for r in response.context["rows"]] == list(EXPECTED.values())


def test_a_partner_user_may_not_see_it(client):
    alpha, *_ = _march(publish=False)
    client.force_login(PartnerUserFactory(partner=alpha).user)
    assert client.get(URL, MARCH).status_code == 403


def test_a_range_is_stored_once_per_published_run(manager):
    alpha, bravo, charlie, delta = _march()
    manager.get(URL, MARCH)
    manager.get(URL, {**MARCH, "sort": "sourced"})
    assert ExplorerPeriod.objects.count() == 1 and ExplorerRow.objects.count() == 4
    stored = ExplorerPeriod.objects.get()
    # A new publication is a new run: the range is computed from its facts, the old rows go.
    kt.deal("50.00", created="2026-03-01 09:00", closed="2026-03-21 09:00", sourced_by=bravo)
    kt.recompute(as_of="2026-04-30")
    response = manager.get(URL, {**MARCH, "sort": "partner", "direction": "asc"})
    assert [str(r.sourced) for r in response.context["rows"]] == ["1000.00", "50.00", "0.00", "200.00"]
    assert str(response.context["total"].sourced) == "1250.00"
    assert list(ExplorerPeriod.objects.values_list("run_id", flat=True)) != [stored.run_id]
    assert ExplorerPeriod.objects.count() == 1 and ExplorerRow.objects.count() == 4


@pytest.mark.parametrize("publish", [True, False], ids=["published", "before-any-publication"])
def test_the_number_of_queries_does_not_grow_with_the_partners(manager, publish):
    web = kt.join_source("web")

    def add(keys):
        for key in keys:
            p = kt.partner(key, web)
            d = kt.deal("100.00", created="2026-03-01 09:00", closed="2026-03-20 09:00")
            kt.touch(d, p, "2026-03-02 09:00")
            kt.deal("40.00", created="2026-03-01 09:00", closed="2026-03-21 09:00", sourced_by=p)

    counts = []
    for keys in (["p1", "p2", "p3"], [f"q{i}" for i in range(27)]):
        add(keys)
        if publish:
            kt.recompute(as_of="2026-04-30")
        with CaptureQueriesContext(connection) as cold:  # stores the range (published)
            manager.get(URL, MARCH)
        with CaptureQueriesContext(connection) as warm:
            response = manager.get(URL, {**MARCH, "sort": "partner", "direction": "desc"})
        counts.append((len(cold), len(warm)))
    assert response.context["total"].count == 30
    assert str(response.context["total"].sourced) == "1200.00"
    assert [str(t) for t in response.context["totals"]] == ["4200.00"] * 5
    assert len(response.context["rows"]) == 25 and response.context["rows"][0].partner_key == "q9"
    assert counts[0] == counts[1]


def test_the_api_pages_the_rows_in_partner_order():
    alpha, bravo, charlie, delta = _march()
    api = client_for(StaffUserFactory())
    params = {"model": "position_based", "period_from": "2026-03-01", "period_to": "2026-03-31"}
    first = api.get("/api/v1/kpi-attribution/", {**params, "page_size": 3}).json()
    assert first["count"] == 4 and first["previous"] is None and "page=2" in first["next"]
    second = api.get(first["next"]).json()
    rows = first["results"] + second["results"]
    assert [(r["partner_key"], r["sourced"], r["influenced"], r["attributed"]) for r in rows] == [
        ("alpha", "1000.00", "1000.00", "1800.00"),
        ("bravo", "0.00", "1000.00", "200.00"),
        ("charlie", "0.00", "500.00", "500.00"),
        ("delta", "200.00", "0.00", "200.00"),
    ]
    portal = client_for(PartnerUserFactory(partner=bravo).user)
    own = portal.get("/api/v1/kpi-attribution/", params).json()
    assert own["count"] == 1 and [r["attributed"] for r in own["results"]] == ["200.00"]
