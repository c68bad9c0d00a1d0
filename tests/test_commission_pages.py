"""The commission pages of the dashboards: plans, plan editing and the review queue."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client

from economics.ledger import build_ledger
from economics.models import CommissionEntry, CommissionPlan, CommissionRule
from partners.roles import StaffRole
from tests.factories import DealFactory, PartnerFactory, PartnerUserFactory, StaffUserFactory

pytestmark = pytest.mark.django_db
CLOSED = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
PLANS, REVIEW, NEW = (
    "/dashboard/commissions/plans/",
    "/dashboard/commissions/review/",
    "/dashboard/commissions/plans/new/",
)


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def entries():
    plan = CommissionPlan.objects.create(name="Standard", effective_from=datetime(2026, 1, 1).date())
    CommissionRule.objects.create(plan=plan, kind="percent_sourced", rate=Decimal("10"))
    a, b = PartnerFactory(name="Alpha"), PartnerFactory(name="Beta")
    DealFactory(sourcing_partner=a, amount=Decimal("1000.00"), status="won", closed_at=CLOSED)
    DealFactory(sourcing_partner=b, amount=Decimal("300.00"), status="won", closed_at=CLOSED)
    build_ledger()
    return {e.partner.name: e for e in CommissionEntry.objects.select_related("partner")}


def test_only_staff_open_the_pages(entries):
    partner_admin = PartnerUserFactory(partner=entries["Alpha"].partner).user
    for url in (PLANS, REVIEW):
        assert client_for(partner_admin).get(url).status_code == 403
        assert client_for(StaffUserFactory(role=StaffRole.SALES_OPS)).get(url).status_code == 200
    # Sales ops read; only partner managers change plans and decide.
    assert client_for(StaffUserFactory(role=StaffRole.SALES_OPS)).get(NEW).status_code == 403
    response = client_for(StaffUserFactory(role=StaffRole.SALES_OPS)).post(
        REVIEW, {"entry": [entries["Alpha"].pk], "action": "approve"}
    )
    assert response.status_code == 403


def test_review_queue_lists_pending_and_approves_in_bulk(entries):
    manager = client_for(StaffUserFactory())
    page = manager.get(REVIEW).content.decode()
    assert "Alpha" in page and "Beta" in page and "100.00" in page and "30.00" in page
    filtered = manager.get(REVIEW, {"partner": entries["Beta"].partner_id}).content.decode()
    assert "Alpha" not in filtered.split('id="commission-entries"')[1]
    response = manager.post(
        REVIEW, {"entry": [e.pk for e in entries.values()], "action": "approve"}, follow=True
    )
    assert "2 entries approved." in response.content.decode()
    assert set(CommissionEntry.objects.values_list("status", flat=True)) == {"approved"}


def test_decline_needs_a_reason(entries):
    manager = client_for(StaffUserFactory())
    response = manager.post(REVIEW, {"entry": [entries["Alpha"].pk], "action": "decline"}, follow=True)
    assert "needs its reason" in response.content.decode()
    manager.post(REVIEW, {"entry": [entries["Alpha"].pk], "action": "decline", "reason": "Test account"})
    entry = CommissionEntry.objects.get(pk=entries["Alpha"].pk)
    assert (entry.status, entry.decline_reason) == ("declined", "Test account")


def rule_rows(*rows):
    data = {
        "rules-TOTAL_FORMS": str(len(rows)),
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "30",
    }
    for i, row in enumerate(rows):
        data |= {f"rules-{i}-{k}": v for k, v in row.items()}
    return data


def test_manager_creates_and_edits_a_plan(db):
    partner = PartnerFactory(key="p-1", tier="gold")
    manager = client_for(StaffUserFactory())
    assert manager.get(NEW).status_code == 200
    body = {
        "name": "Gold",
        "priority": "3",
        "effective_from": "2026-01-01",
        "is_active": "on",
        "tiers_text": "gold, platinum",
        "partner_keys": "p-1",
        **rule_rows({"kind": "percent_attributed", "rate": "12.5", "cap": "900"}, {"kind": ""}),
    }
    response = manager.post(NEW, body)
    assert response.status_code == 302, response.content.decode()
    plan = CommissionPlan.objects.get()
    assert (plan.tiers, list(plan.partners.all())) == (["gold", "platinum"], [partner])
    assert list(plan.rules.values_list("kind", "rate", "cap")) == [
        ("percent_attributed", Decimal("12.5"), Decimal("900"))
    ]
    assert "12.5 % of attributed revenue" in manager.get(PLANS).content.decode()
    bad = manager.post(f"{PLANS}{plan.pk}/", {**body, "effective_to": "2025-12-31", "partner_keys": "nope"})
    page = bad.content.decode()
    assert bad.status_code == 200 and "no partner with key or id nope" in page
    wrong_rule = manager.post(f"{PLANS}{plan.pk}/", {**body, **rule_rows({"kind": "fixed_registration"})})
    assert "needs its amount" in wrong_rule.content.decode()


def test_the_pages_label_every_control(entries):
    from tests.test_dashboard_accessibility import unlabelled

    manager = client_for(StaffUserFactory())
    plan = CommissionPlan.objects.get()
    for url in (PLANS, REVIEW, NEW, f"{PLANS}{plan.pk}/"):
        html = manager.get(url).content.decode()
        assert unlabelled(html) == [], url


def test_managers_change_the_commission_settings(db):
    from economics.models import CommissionSettings
    from events.models import Event

    manager = client_for(StaffUserFactory())
    bad = manager.post(PLANS, {"hold_days": "-3", "minimum_payout": "abc"})
    assert bad.status_code == 200 and CommissionSettings.load().hold_days == 30
    assert manager.post(PLANS, {"hold_days": "45", "minimum_payout": "100.00"}).status_code == 302
    row = CommissionSettings.load()
    assert (row.hold_days, row.minimum_payout) == (45, Decimal("100.00"))
    assert Event.objects.filter(type="commission_settings.saved").count() == 1
    sales_ops = client_for(StaffUserFactory(role=StaffRole.SALES_OPS))
    assert sales_ops.post(PLANS, {"hold_days": "1", "minimum_payout": "1"}).status_code == 403
