"""`manage.py screenshots` logs in as a manager and a partner and writes a PNG per main page."""

import pytest
from django.core.management import call_command

from tests.factories import DEFAULT_PASSWORD, PartnerFactory, PartnerUserFactory, StaffUserFactory
from tests.support.dashboards import publish

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_screenshots_command_writes_a_png_per_page(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    StaffUserFactory(username="maria")
    PartnerUserFactory(user__username="pat")
    star = PartnerFactory(name="Star")
    publish([(None, "2026-03", "won_revenue", "900.00"), (star, "2026-03", "sourced_revenue", "900.00")])

    call_command(
        "screenshots",
        out=tmp_path,
        manager=f"maria:{DEFAULT_PASSWORD}",
        partner=f"pat:{DEFAULT_PASSWORD}",
    )

    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == sorted(
        f"{n}.png"
        for n in (
            "apply",
            "applications",
            "portal-users",
            "portal-profile",
            "overview",
            "overview-range",
            "join-sources",
            "partners",
            "partner-detail",
            "registrations",
            "attribution",
            "reconciliation",
            "portal-home",
            "portal-register",
            "portal-register-errors",
            "portal-registrations",
            "portal-deals",
        )
    )
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
