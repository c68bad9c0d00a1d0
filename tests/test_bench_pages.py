"""bench.pages: every page it measures answers 200 for its user, and its figures are filled in."""

import io

import pytest
from django.core.management import call_command
from django.test import Client

from bench import pages
from kpis.forecast_store import forecast_snapshot_compute
from tests.support import kpis as t

pytestmark = pytest.mark.django_db


def test_every_page_of_the_benchmark_answers_and_is_counted():
    call_command("seed_demo", "--partners", "20", "--deals", "200", "--seed", "11", stdout=io.StringIO())
    t.recompute(as_of="2026-12-03")
    forecast_snapshot_compute()  # as bench.pages._prepare does: no worker stores it here
    manager, partner_user, partner_id = pages._users()
    assert pages._users()[2] == partner_id  # the users are made once, then found again
    clients = {"manager": Client(), "partner": Client()}
    clients["manager"].force_login(manager)
    clients["partner"].force_login(partner_user)

    cases = pages._cases(partner_id)
    assert {c.user for c in cases} == {"manager", "partner"}
    assert [c.label for c in cases if c.target_ms == pages.HEAVY_MS] == [
        "attribution explorer",
        "heat map",
        "heat map, quarter",
    ]
    assert [c.target_ms for c in cases if c.label == "portal home"] == [pages.PORTAL_HOME_MS]
    for case in cases:
        figures = pages._measure(clients[case.user], case.url, runs=2)
        assert figures.status == 200, case.url
        assert figures.runs == 2 and figures.queries > 0 and figures.median_ms <= figures.max_ms
        assert figures.slowest_ms == max(ms for ms, _ in figures.slow)
