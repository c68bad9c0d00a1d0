"""What a manager and a partner do in a real browser (headless Chromium, Playwright)."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from deals.models import DealRegistration
from deals.services import registration_submit
from kpis.models import KpiRun
from kpis.services import kpi_run_execute
from prm.celery import app as celery_app
from tests.browser.conftest import log_in
from tests.factories import DEFAULT_PASSWORD, DealFactory, PartnerUserFactory, StaffUserFactory
from tests.support import kpis as kt

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_manager_approves_a_registration_and_sees_kpi_cards_and_charts_with_numbers(
    browser_page, live_server
):
    page = browser_page
    web = kt.join_source("web")
    alpha, bravo = kt.partner("alpha", web), kt.partner("bravo", web)
    kt.deal("4000.00", created="2026-02-01 09:00", closed="2026-03-05 10:00", sourced_by=alpha)
    kt.deal("6000.00", created="2026-02-01 09:00", closed="2026-03-06 10:00")
    kt.recompute(as_of="2026-03-31")
    registration = registration_submit(
        partner=bravo,
        account_name="Globex",
        domain="globex.com",
        amount=Decimal("2500"),
        submitted_at=timezone.now() - timedelta(hours=2),
    )
    manager = StaffUserFactory(username="maria")

    log_in(page, live_server, "maria", DEFAULT_PASSWORD)
    assert page.url.endswith("/dashboard/")
    page.get_by_role("link", name="Registrations").click()
    item = page.locator(f'[data-registration="{registration.pk}"]')
    assert "Globex" in item.inner_text()
    item.get_by_label("Approve", exact=True).check()
    item.get_by_label("Reason").fill("Known opportunity")
    item.get_by_role("button", name="Record decision").click()
    page.wait_for_load_state()
    assert "approved" in page.locator(".messages").inner_text()
    registration.refresh_from_db()
    assert registration.status == DealRegistration.Status.APPROVED and registration.decided_by == manager

    page.goto(f"{live_server.url}/dashboard/?grain=month&period=2026-03")
    sourced = page.locator('.kpi-card[data-metric="sourced_revenue"] .kpi-card__value')
    # Compact on the card, the exact amount on hover.
    assert sourced.inner_text() == "$4.00K"
    assert sourced.locator("span").get_attribute("title") == "$4,000.00"
    assert page.locator('.kpi-card[data-metric="sourced_share"] .kpi-card__value').inner_text() == "40.0%"
    page.wait_for_selector('#revenue-chart[data-rendered="true"]')
    bars = page.locator("#revenue-chart .trace.bars .point")
    assert bars.count() >= 3
    # The stacked March bar reaches $10k: the axis is labelled with numbers up to it.
    ticks = page.locator("#revenue-chart .ytick text").all_text_contents()
    assert "10k" in ticks, ticks

    # "Recompute now" queues a run and shows its progress until it ends.
    page.get_by_role("button", name="Recompute now").click()
    page.wait_for_function("document.querySelector('.run-progress').textContent.includes('queued')")
    run = KpiRun.objects.filter(status=KpiRun.Status.QUEUED).get()
    # No worker runs here: the test executes the run itself and drops the task the click queued,
    # so no later worker on the same broker picks up a run of this test database.
    celery_app.control.purge()
    kpi_run_execute(run_id=run.pk)
    # The page polls the run's status, then reloads on the new data set.
    page.wait_for_function(
        f"document.querySelector('.data-as-of p').textContent.includes('(KPI run #{run.pk}')", timeout=20_000
    )
    assert page.locator('.kpi-card[data-metric="sourced_revenue"] .kpi-card__value').inner_text() == "$4.00K"


def test_partner_registers_a_deal_fixes_a_validation_error_and_sees_it_listed(browser_page, live_server):
    page = browser_page
    member = PartnerUserFactory(user__username="pat")
    log_in(page, live_server, "pat", DEFAULT_PASSWORD)
    assert page.url.endswith("/portal/")
    # Keyboard: the first Tab reaches the skip link, which moves focus to the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.get_by_role("link", name="Register a deal").first.click()
    page.get_by_label("Customer name").fill("Initech")
    page.get_by_label("Customer web domain").fill("initech.com")
    page.get_by_label("Expected amount").fill("0")
    page.get_by_label("Notes").fill("Met at the summit")
    page.get_by_role("button", name="Submit registration").click()
    page.wait_for_load_state()

    amount = page.get_by_label("Expected amount")
    assert amount.get_attribute("aria-invalid") == "true"
    error_id = amount.get_attribute("aria-describedby").split()[-1]
    assert "Enter an amount greater than 0." in page.locator(f"#{error_id}").inner_text()
    assert page.get_by_label("Customer name").input_value() == "Initech"
    assert page.get_by_label("Notes").input_value() == "Met at the summit"

    amount.fill("18000")
    page.get_by_role("button", name="Submit registration").click()
    page.wait_for_load_state()
    assert page.url.endswith("/portal/registrations/")
    row = page.locator("#registrations tbody tr").first
    assert "Initech" in row.inner_text() and "Submitted" in row.inner_text()
    assert DealRegistration.objects.get().partner == member.partner


def test_partner_cannot_reach_another_partners_pages_or_any_manager_page(browser_page, live_server):
    page = browser_page
    PartnerUserFactory(user__username="pat")
    other = PartnerUserFactory().partner
    their_registration = registration_submit(
        partner=other, account_name="Hooli", domain="hooli.com", amount=Decimal("10")
    )
    their_deal = DealFactory(sourcing_partner=other)
    log_in(page, live_server, "pat", DEFAULT_PASSWORD)
    for path in (f"/portal/registrations/{their_registration.pk}/", f"/portal/deals/{their_deal.pk}/"):
        assert page.goto(f"{live_server.url}{path}").status == 404
    for path in (
        "/dashboard/",
        "/dashboard/partners/",
        f"/dashboard/partners/{other.pk}/",
        "/dashboard/registrations/",
    ):
        assert page.goto(f"{live_server.url}{path}").status == 403
    assert "Hooli" not in page.goto(f"{live_server.url}/portal/registrations/").text()


def test_manager_sees_a_run_get_stuck_releases_it_and_the_replacement_publishes(browser_page, live_server):
    page = browser_page
    web = kt.join_source("web")
    kt.deal(
        "4000.00", created="2026-02-01 09:00", closed="2026-03-05 10:00", sourced_by=kt.partner("alpha", web)
    )
    run = KpiRun.objects.create(trigger="nightly", mode="full", status=KpiRun.Status.RUNNING)
    KpiRun.objects.filter(pk=run.pk).update(started_at=timezone.now(), heartbeat_at=timezone.now())
    StaffUserFactory(username="maria")

    log_in(page, live_server, "maria", DEFAULT_PASSWORD)
    release = page.locator("form[data-release]")
    assert release.is_hidden()  # alive: nothing to release
    # Its worker dies: no heartbeat any more. The page, polling the run, offers to release it.
    KpiRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    release.wait_for(state="visible")
    assert re.search(rf"KPI run #{run.pk} looks stuck: no sign of life for 60\d s", release.inner_text())
    page.get_by_role("button", name="Release it and recompute").click()
    page.wait_for_function("document.querySelector('.run-progress').textContent.includes('queued')")
    replacement = KpiRun.objects.get(replaces=run)
    run.refresh_from_db()
    assert (run.status, run.released_by) == ("failed", "dashboard user maria")
    celery_app.control.purge()  # no worker here: the test runs the replacement itself
    kpi_run_execute(run_id=replacement.pk)
    page.wait_for_function(
        f"document.querySelector('.data-as-of p').textContent.includes('(KPI run #{replacement.pk}')",
        timeout=20_000,
    )
