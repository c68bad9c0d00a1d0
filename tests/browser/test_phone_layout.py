"""No page scrolls sideways on a 390 px phone: not the page, and not a table inside it (issue 19)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.browser.conftest import log_in
from tests.factories import (
    DEFAULT_PASSWORD,
    DealFactory,
    DealRegistrationFactory,
    JoinSourceFactory,
    PartnerFactory,
    PartnerUserFactory,
    StaffUserFactory,
    TouchFactory,
)
from tests.support.dashboards import publish

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Elements wider than their box: the document, and any wrapper that would scroll sideways.
OVERFLOW = """() => {
  const out = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth) out.push("page " + doc.scrollWidth);
  for (const el of document.querySelectorAll(".table-wrap, main, .card, .panel, form")) {
    if (el.scrollWidth > el.clientWidth + 1) out.push((el.id || el.className) + " " + el.scrollWidth);
  }
  return out;
}"""


@pytest.fixture
def phone(browser_page):
    browser_page.set_viewport_size({"width": 390, "height": 844})
    return browser_page


def _program():
    """Long names and every kind of row, so tables have something to be wide with."""
    source = JoinSourceFactory(name="Cloud marketplace listing for enterprise resellers")
    partner = PartnerFactory(
        name="Northwind Enterprise Consulting and Integration Services International",
        tier="gold",
        join_source=source,
    )
    other = PartnerFactory(name="Bravo", join_source=source)
    now = timezone.now()
    closed = now - timedelta(days=40)
    won = DealFactory(
        name="Platform renewal with extended support and onboarding",
        sourcing_partner=partner,
        amount=Decimal("1234567.89"),
        status="won",
        created_at=closed - timedelta(days=30),
        closed_at=closed,
    )
    influenced = DealFactory(
        amount=Decimal("5000.00"), status="won", created_at=closed - timedelta(days=9), closed_at=closed
    )
    TouchFactory(deal=influenced, partner=partner, touched_at=closed - timedelta(days=3))
    DealRegistrationFactory(partner=partner, submitted_at=now - timedelta(days=2), deal=None)
    DealRegistrationFactory(partner=other, account=won.account, submitted_at=now - timedelta(days=1))
    month = f"{closed:%Y-%m}"
    publish(
        [
            (None, month, "won_revenue", "1239567.89"),
            (None, month, "sourced_revenue", "1234567.89"),
            (partner, month, "sourced_revenue", "1234567.89"),
            (partner, month, "leads_generated", "12"),
            (source, month, "applications", "3"),
        ]
    )
    return partner, month


def _check(page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    assert page.evaluate(OVERFLOW) == [], url


def test_staff_pages_fit_a_phone(phone, live_server):
    partner, month = _program()
    StaffUserFactory(username="maria")
    log_in(phone, live_server, "maria", DEFAULT_PASSWORD)
    for path in (
        f"/dashboard/?period={month}",
        f"/dashboard/?start={month}&end={month}&tier=gold",
        f"/dashboard/join-sources/?period={month}",
        f"/dashboard/partners/?period={month}",
        f"/dashboard/partners/{partner.pk}/?period={month}",
        "/dashboard/applications/",
        "/dashboard/registrations/",
        f"/dashboard/attribution/?period={month}",
        "/dashboard/reconciliation/",
        "/dashboard/audit/",
        "/dashboard/webhooks/",
    ):
        _check(phone, live_server.url + path)


def test_portal_pages_fit_a_phone(phone, live_server):
    partner, _ = _program()
    PartnerUserFactory(partner=partner, user__username="pat")
    log_in(phone, live_server, "pat", DEFAULT_PASSWORD)
    for path in (
        "/portal/",
        "/portal/register/",
        "/portal/registrations/",
        "/portal/deals/",
        "/portal/profile/",
    ):
        _check(phone, live_server.url + path)
    # A stacked table row still names each value with its column.
    phone.goto(live_server.url + "/portal/deals/")
    cell = phone.locator("#deals tbody td").first
    assert cell.get_attribute("data-label") == "Customer"
