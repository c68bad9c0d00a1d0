"""/api/v1/kpi-drilldown/: the rows behind a KPI value by role, and `rows_url` on every KPI value."""

import csv
import io

import pytest

from tests.support.api import *  # noqa: F403
from tests.support.api import client_for
from tests.test_kpi_drilldown import build_program

pytestmark = pytest.mark.django_db


@pytest.fixture
def program():
    return build_program()


def test_every_kpi_value_links_to_rows_that_add_up_to_it(program, manager):
    client = client_for(manager)
    values = client.get("/api/v1/kpi-values/?grain=month&period_from=2026-03&period_to=2026-03&page_size=500")
    assert values.status_code == 200
    results = values.json()["results"]
    checked = 0
    for v in results:
        if v["target_metric"]:
            assert v["rows_url"] is None
            continue
        body = client.get(v["rows_url"]).json()
        assert body["published"] == body["adds_up_to"] == v["value"], v
        checked += 1
    assert checked > 50


def test_a_partner_user_reads_its_own_rows_only(program, salesops):
    from partners.models import PartnerUser
    from tests.factories import PartnerUserFactory

    a, b, web = program["a"], program["b"], program["web"]
    for role in (PartnerUser.Role.ADMIN, PartnerUser.Role.MEMBER):
        client = client_for(PartnerUserFactory(partner=a, role=role).user)
        own = client.get("/api/v1/kpi-drilldown/attributed_revenue/?period=2026-03")
        assert own.status_code == 200
        body = own.json()
        assert (body["scope"], body["partner"], body["adds_up_to"]) == ("partner", a.pk, "425.00")
        assert {r["partner"] for r in body["results"]} == {"A"}
        for url in (
            f"/api/v1/kpi-drilldown/attributed_revenue/?period=2026-03&partner={b.pk}",
            f"/api/v1/kpi-drilldown/sourced_revenue/?period=2026-03&join_source={web.pk}",
            "/api/v1/kpi-drilldown/won_revenue/?period=2026-03",
        ):
            assert client.get(url).status_code == 404, url
    staff = client_for(salesops).get(
        f"/api/v1/kpi-drilldown/influenced_revenue/?period=2026-03&partner={b.pk}"
    )
    assert staff.json()["adds_up_to"] == "200.00"


def test_bad_input_and_outsiders(program, manager, outsider):
    client = client_for(manager)
    assert client.get("/api/v1/kpi-drilldown/won_revenue/?period=March").status_code == 400
    assert client.get("/api/v1/kpi-drilldown/nope/?period=2026-03").status_code == 404
    assert client_for(outsider).get("/api/v1/kpi-drilldown/won_revenue/?period=2026-03").status_code == 403


def test_ratios_have_two_parts_and_the_csv_streams_every_row(program, manager):
    client = client_for(manager)
    body = client.get("/api/v1/kpi-drilldown/cac/?period=2026-03").json()
    assert [(p["part"], p["rows"]) for p in body["parts"]] == [("numerator", 4), ("denominator", 1)]
    # $1,000 MDF + $500 tooling + the $30 commission payout + the $40 MDF reimbursement.
    assert body["totals"]["amount"] == "1570.00"
    denominator = client.get(body["parts"][1]["url"]).json()
    assert [r["amount"] for r in denominator["results"]] == ["300.00"]
    response = client.get("/api/v1/kpi-drilldown/cac/?period=2026-03&format=csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(r["amount"] for r in rows) == ["1000.00", "30.00", "40.00", "500.00"]
