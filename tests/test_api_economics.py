"""/api/v1/commission-plans/ and /api/v1/commission-entries/: who sees and changes what."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from economics.ledger import build_ledger
from economics.models import CommissionEntry, CommissionPlan, CommissionRule
from events.models import Event
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of, ids

CLOSED = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
PLANS, ENTRIES = f"{API}/commission-plans/", f"{API}/commission-entries/"


@pytest.fixture
def ledger(world_a, world_b):
    plan = CommissionPlan.objects.create(name="All", effective_from=date(2026, 1, 1))
    CommissionRule.objects.create(plan=plan, kind="percent_sourced", rate=Decimal("10"))
    for world in (world_a, world_b):
        world.deal.status, world.deal.closed_at = "won", CLOSED
        world.deal.save()
    build_ledger()
    return {
        "a": CommissionEntry.objects.get(partner=world_a.partner),
        "b": CommissionEntry.objects.get(partner=world_b.partner),
    }


def test_staff_see_every_entry_and_partner_admins_their_own(ledger, as_manager, as_salesops, as_admin_a):
    assert ids(as_manager.get(ENTRIES)) == {ledger["a"].pk, ledger["b"].pk}
    assert ids(as_salesops.get(ENTRIES)) == {ledger["a"].pk, ledger["b"].pk}
    response = as_admin_a.get(ENTRIES)
    assert ids(response) == {ledger["a"].pk}
    # 10 % of the 1200.00 deal.
    assert response.json()["results"][0]["amount"] == "120.00"
    assert as_admin_a.get(f"{ENTRIES}{ledger['a'].pk}/").status_code == 200
    assert as_admin_a.get(f"{ENTRIES}{ledger['b'].pk}/").status_code == 404


def test_members_and_users_without_a_role_get_403(ledger, as_member_a, as_outsider, anonymous):
    for client in (as_member_a, as_outsider):
        assert client.get(ENTRIES).status_code == 403
        assert client.get(f"{ENTRIES}{ledger['a'].pk}/").status_code == 403
        assert client.get(PLANS).status_code == 403
    assert anonymous.get(ENTRIES).status_code == 401


def test_filters(ledger, as_manager, world_a):
    assert ids(as_manager.get(ENTRIES, {"partner": world_a.partner.pk})) == {ledger["a"].pk}
    assert ids(as_manager.get(ENTRIES, {"status": "approved"})) == set()
    assert ids(as_manager.get(ENTRIES, {"earned_from": "2026-01-21"})) == set()
    assert ids(as_manager.get(ENTRIES, {"earned_to": "2026-01-20"})) == {ledger["a"].pk, ledger["b"].pk}
    bad = as_manager.get(ENTRIES, {"status": "nope", "earned_from": "2026-02-30"})
    assert bad.status_code == 400
    assert set(error_of(bad)["fields"]) == {"status", "earned_from"}


def test_bulk_approve_respects_the_hold_and_roles(ledger, as_manager, as_admin_a):
    body = {"ids": [ledger["a"].pk, ledger["b"].pk, 999999]}
    assert as_admin_a.post(f"{ENTRIES}approve/", body, format="json").status_code == 403
    held = as_manager.post(f"{ENTRIES}approve/", body, format="json")
    # Closed on 2026-01-20: the 30-day hold ended on 2026-02-19, long before today.
    assert held.status_code == 200
    assert held.json() == {
        "decided": sorted([ledger["a"].pk, ledger["b"].pk]),
        "on_hold": [],
        "not_pending": [],
        "not_found": [999999],
    }
    again = as_manager.post(f"{ENTRIES}approve/", body, format="json").json()
    assert again["not_pending"] == sorted([ledger["a"].pk, ledger["b"].pk])
    assert Event.objects.filter(type="commission_entry.approved").count() == 2


def test_bulk_decline_needs_a_reason(ledger, as_manager):
    response = as_manager.post(f"{ENTRIES}decline/", {"ids": [ledger["a"].pk]}, format="json")
    assert response.status_code == 400 and "reason" in error_of(response)["fields"]
    ok = as_manager.post(
        f"{ENTRIES}decline/", {"ids": [ledger["a"].pk], "reason": "Test deal"}, format="json"
    )
    assert ok.json()["decided"] == [ledger["a"].pk]
    entry = CommissionEntry.objects.get(pk=ledger["a"].pk)
    assert (entry.status, entry.decline_reason) == ("declined", "Test deal")


def test_plan_create_change_and_refusals(db, as_manager, as_salesops):
    body = {
        "name": "Resellers",
        "priority": 5,
        "effective_from": "2026-01-01",
        "partner_types": ["reseller"],
        "rules": [
            {"kind": "percent_sourced", "rate": "12.5", "cap": "1000.00"},
            {"kind": "fixed_registration", "amount": "25"},
        ],
    }
    assert as_salesops.post(PLANS, body, format="json").status_code == 403
    created = as_manager.post(PLANS, body, format="json")
    assert created.status_code == 201, created.json()
    plan = created.json()
    assert [(r["kind"], r["rate"], r["amount"], r["cap"]) for r in plan["rules"]] == [
        ("percent_sourced", "12.5000", None, "1000.00"),
        ("fixed_registration", None, "25.00", None),
    ]
    assert as_salesops.get(f"{PLANS}{plan['id']}/").status_code == 200
    keep = plan["rules"][0]
    changed = as_manager.patch(
        f"{PLANS}{plan['id']}/",
        {
            "effective_to": "2026-06-30",
            "rules": [{"id": keep["id"], "kind": "percent_sourced", "rate": "10"}],
        },
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert [(r["id"], r["rate"]) for r in changed.json()["rules"]] == [(keep["id"], "10.0000")]
    assert Event.objects.filter(type="commission_plan.saved").count() == 2
    bad = as_manager.post(
        PLANS,
        {
            "name": "X",
            "effective_from": "2026-05-01",
            "effective_to": "2026-04-01",
            "rules": [{"kind": "percent_sourced"}],
        },
        format="json",
    )
    assert bad.status_code == 400
    assert "effective_to" in error_of(bad)["fields"]
    wrong_rule = as_manager.post(
        PLANS,
        {"name": "X", "effective_from": "2026-05-01", "rules": [{"kind": "fixed_first_sale", "rate": "5"}]},
        format="json",
    )
    assert wrong_rule.status_code == 400 and "rules" in error_of(wrong_rule)["fields"]
    assert CommissionPlan.objects.count() == 1


def test_a_rule_with_entries_cannot_be_removed(ledger, as_manager):
    plan = CommissionPlan.objects.get()
    response = as_manager.patch(f"{PLANS}{plan.pk}/", {"rules": []}, format="json")
    assert response.status_code == 400
    assert plan.rules.count() == 1
