"""`manage.py screenshots` logs in as a manager and a partner and writes a PNG per main page, and
one per page it reaches from them (a drill-down, the top partner) when the program has one."""

import pytest
from django.core.management import call_command

from dashboards.management.commands.screenshots import PARTNER_PAGES, PUBLIC_PAGES, STAFF_PAGES
from tests.factories import DEFAULT_PASSWORD, PartnerUserFactory, StaffUserFactory
from tests.support import kpis as t

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_screenshots_command_writes_a_png_per_page(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    StaffUserFactory(username="maria")
    star = t.partner("star", t.join_source("web"), joined="2026-01-10")
    PartnerUserFactory(user__username="pat", partner=star)
    t.deal("900.00", created="2026-03-01 10:00", closed="2026-03-11 10:00", sourced_by=star)
    t.recompute(as_of="2026-04-15")  # a real run: the drill-down pages read its facts

    call_command(
        "screenshots",
        out=tmp_path,
        manager=f"maria:{DEFAULT_PASSWORD}",
        partner=f"pat:{DEFAULT_PASSWORD}",
    )

    names = sorted(p.name for p in tmp_path.glob("*.png"))
    pages = [name for name, _ in PUBLIC_PAGES + STAFF_PAGES + PARTNER_PAGES]
    # Reached from a page: the form sent with mistakes, the first KPI card's rows (staff and
    # portal), the leaderboard's top partner. No influenced deal, payout or statement to open here.
    reached = ["portal-register-errors", "drilldown", "portal-drilldown", "partner-detail"]
    assert names == sorted(f"{name}.png" for name in pages + reached)
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
