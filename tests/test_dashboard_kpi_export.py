"""Every number the dashboards show equals the KPI export's value for the same scope and period.

A small program is computed by the real KPI engine; the pages are read as HTML (each number carries
its export string in `data-value`) and compared with `kpis.export.export_rows`.
"""

import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from kpis.engine import ZERO_WHEN_EMPTY
from kpis.export import export_rows, format_value
from kpis.periods import parse_period
from tests.factories import StaffUserFactory
from tests.support import kpis as kt

pytestmark = pytest.mark.django_db


class NumberCollector(HTMLParser):
    """(container metric, compare kind or "value", data-value) for every element with a data-value."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict] = []
        self.found: list[tuple[str, str, str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        context = dict(self.stack[-1]) if self.stack else {}
        for name in ("data-partner", "data-join-source", "data-period"):
            if name in attrs:
                context[name] = attrs[name]
        if "data-metric" in attrs:
            context["metric"] = attrs["data-metric"]
        if tag not in ("input", "br", "img", "meta", "link"):
            self.stack.append(context)
        if "data-value" in attrs and "metric" in context:
            kind = attrs.get("data-compare", "value")
            self.found.append((context["metric"], kind, attrs["data-value"], context))

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()


def numbers(html: str) -> list[tuple[str, str, str, dict]]:
    parser = NumberCollector()
    parser.feed(html)
    return parser.found


def exported(grain: str) -> dict[tuple[str, str, str, str], str]:
    return {
        (r["scope"], r["scope_key"], r["period"], r["metric"]): r["value"]
        for r in export_rows(grain=grain)
        if not r["target_metric"]
    }


def expected(export: dict, scope: str, key: str, period: str, metric: str) -> str:
    if (scope, key, period, metric) in export:
        return export[(scope, key, period, metric)]
    # The export has no row where nothing happened; money and counts then read 0, the rest undefined.
    return format_value(metric, "", 0) if metric in ZERO_WHEN_EMPTY else ""


@pytest.fixture
def computed_program():
    web = kt.join_source("web")
    events = kt.join_source("events", kind="event")
    alpha = kt.partner("alpha", web, joined="2025-02-01", applied="2025-01-20")
    bravo = kt.partner("bravo", events, joined="2026-01-05", applied="2025-12-20")
    kt.partner("charlie", web, joined=None, applied="2026-03-02")
    kt.deal("4000.00", created="2026-01-10 09:00", closed="2026-03-05 10:00", sourced_by=alpha)
    kt.deal("1500.00", created="2025-02-10 09:00", closed="2025-03-20 10:00", sourced_by=alpha)
    influenced = kt.deal("2500.00", created="2026-02-01 09:00", closed="2026-03-20 10:00")
    kt.touch(influenced, alpha, "2026-02-02 09:00")
    kt.touch(influenced, bravo, "2026-03-01 09:00")
    kt.deal("3000.00", created="2026-02-01 09:00", closed="2026-02-25 10:00")
    kt.deal("900.00", created="2026-02-01 09:00", closed="2026-03-10 10:00", status="lost", sourced_by=bravo)
    kt.registration(bravo, submitted="2026-03-03 10:00")
    kt.recompute(as_of="2026-03-31")
    return {"alpha": alpha, "bravo": bravo, "web": web, "events": events}


@pytest.fixture
def manager_client(client):
    client.force_login(StaffUserFactory())
    return client


def compare_cards(html: str, export: dict, scope: str, key: str, period_label: str) -> int:
    period = parse_period(period_label)
    periods = {
        "value": period.label,
        "previous": period.previous.label,
        "year_ago": period.year_earlier.label,
    }
    checked = 0
    for metric, kind, shown, _ in numbers(html):
        if kind not in periods:
            continue
        assert shown == expected(export, scope, key, periods[kind], metric), (metric, kind, periods[kind])
        checked += 1
    return checked


@pytest.mark.parametrize(
    ("grain", "period"), [("month", "2026-03"), ("quarter", "2026-Q1"), ("year", "2026")]
)
def test_overview_numbers_equal_the_export(manager_client, computed_program, grain, period):
    html = manager_client.get(
        reverse("dashboards:overview"), {"grain": grain, "period": period}
    ).content.decode()
    export = exported(grain)
    assert export[("program", "", "2026-03" if grain == "month" else period, "sourced_revenue")]
    checked = compare_cards(html, export, "program", "", period)
    # Twelve cards, each with its period, the previous one and (for months and quarters) a year earlier.
    assert checked == 12 * (2 if grain == "year" else 3)


def test_overview_shows_the_hand_computed_march_figures(manager_client, computed_program):
    html = manager_client.get(
        reverse("dashboards:overview"), {"grain": "month", "period": "2026-03"}
    ).content.decode()
    shown = {(m, kind): v for m, kind, v, _ in numbers(html)}
    assert shown[("sourced_revenue", "value")] == "4000.00"
    assert shown[("influenced_revenue", "value")] == "2500.00"
    assert shown[("sourced_revenue", "year_ago")] == "1500.00"
    # Sourced deals closed in March: one won, one lost.
    assert shown[("win_rate_sourced", "value")] == "0.5000"


def test_revenue_chart_equals_the_exported_monthly_revenue(manager_client, computed_program):
    response = manager_client.get(reverse("dashboards:overview"), {"grain": "month", "period": "2026-03"})
    export = exported("month")
    for label, (sourced, influenced, direct) in response.context["revenue_chart"]["rows"]:
        won = expected(export, "program", "", label, "won_revenue")
        assert format_value("sourced_revenue", "", sourced) == expected(
            export, "program", "", label, "sourced_revenue"
        )
        assert format_value("influenced_revenue", "", influenced) == expected(
            export, "program", "", label, "influenced_revenue"
        )
        assert format_value("won_revenue", "", sourced + influenced + direct) == won


def test_partner_page_numbers_equal_the_export(manager_client, computed_program):
    alpha = computed_program["alpha"]
    url = reverse("dashboards:partner_detail", args=[alpha.pk])
    html = manager_client.get(url, {"grain": "month", "period": "2026-03"}).content.decode()
    export = exported("month")
    cards = [n for n in numbers(html) if "data-period" not in n[3]]
    monthly = [n for n in numbers(html) if "data-period" in n[3]]
    assert (
        compare_cards(html.split('id="partner-monthly"')[0], export, "partner", "alpha", "2026-03") == 12 * 3
    )
    assert len(cards) == 12 * 3 and len(monthly) == 12 * 7
    for metric, _, shown, ctx in monthly:
        assert shown == expected(export, "partner", "alpha", ctx["data-period"], metric), (metric, ctx)


def test_leaderboard_and_join_source_numbers_equal_the_export(manager_client, computed_program):
    export = exported("month")
    html = manager_client.get(reverse("dashboards:partners"), {"period": "2026-03"}).content.decode()
    cells = [(m, v, ctx["data-partner"]) for m, kind, v, ctx in numbers(html)]
    assert len(cells) == 3 * 5
    for metric, shown, key in cells:
        assert shown == expected(export, "partner", key, "2026-03", metric), (key, metric)
    html = manager_client.get(reverse("dashboards:join_sources"), {"period": "2026-03"}).content.decode()
    cells = [(m, v, ctx["data-join-source"]) for m, kind, v, ctx in numbers(html)]
    assert len(cells) == 2 * 7
    for metric, shown, key in cells:
        assert shown == expected(export, "join_source", key, "2026-03", metric), (key, metric)
    assert re.search(r'data-join-source="web"', html)
