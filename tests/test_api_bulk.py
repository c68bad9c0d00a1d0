"""Bulk upserts by external id: the CSV import's validation, all or nothing, every bad row named by
index and field; a CRM upserts by its own ids, unique per system."""

from decimal import Decimal

import pytest

from deals.models import Account, Deal, DealRegistration, Touch
from events.models import Change
from tests.factories import PartnerFactory
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of

pytestmark = pytest.mark.django_db


def post(client, resource: str, rows: list, system: str = "salesforce"):
    return client.post(f"{API}/{resource}/bulk/", {"system": system, "rows": rows}, format="json")


@pytest.fixture
def partner(db):
    return PartnerFactory(key="P-12", name="Northwind")


def test_a_crm_upserts_accounts_deals_registrations_and_touches_by_its_own_ids(as_manager, partner):
    accounts = post(as_manager, "accounts", [{"external_id": "A1", "name": "Acme", "domain": "www.acme.com"}])
    assert accounts.status_code == 200, accounts.content
    account = Account.objects.get(key="salesforce:A1")
    assert accounts.json() == {"created": 1, "updated": 0, "unchanged": 0, "ids": {"A1": account.pk}}
    assert account.domain == "acme.com"  # normalised as the CSV import does
    deal_row = {
        "external_id": "D1",
        "account": "A1",
        "amount": "1200.50",
        "created_at": "2026-03-10T12:00:00Z",
        "status": "open",
        "sourcing_partner": "P-12",
    }
    assert post(as_manager, "deals", [deal_row]).json()["created"] == 1
    deal = Deal.objects.get(key="salesforce:D1")
    assert (deal.account, deal.amount, deal.sourcing_partner) == (account, Decimal("1200.50"), partner)
    again = post(as_manager, "deals", [deal_row]).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 1)
    changed = post(as_manager, "deals", [{**deal_row, "amount": 1500}]).json()
    assert changed["updated"] == 1 and Deal.objects.get(pk=deal.pk).amount == Decimal("1500.00")
    registration = {
        "external_id": "R1",
        "partner": "P-12",
        "account": "A1",
        "amount": "900",
        "submitted_at": "2026-03-01T09:00:00Z",
        "status": "submitted",
    }
    assert post(as_manager, "registrations", [registration]).status_code == 200
    assert DealRegistration.objects.get(key="salesforce:R1").partner == partner
    touch = {"deal": "D1", "partner": "P-12", "kind": "co_sell", "touched_at": "2026-03-12T10:00:00Z"}
    assert post(as_manager, "touches", [touch, touch]).json()["created"] == 1
    assert post(as_manager, "touches", [touch]).json()["unchanged"] == 1
    assert Touch.objects.filter(deal=deal).count() == 1
    # The change feed hears of bulk writes too.
    assert set(Change.objects.filter(resource="deals").values_list("object_id", "action")) == {
        (deal.pk, "created"),
        (deal.pk, "updated"),
    }


def test_the_same_external_id_in_two_systems_is_two_objects(as_manager):
    row = {"external_id": "1001", "name": "Acme"}
    post(as_manager, "accounts", [row], system="salesforce")
    post(as_manager, "accounts", [row], system="hubspot")
    assert sorted(Account.objects.values_list("key", flat=True)) == ["hubspot:1001", "salesforce:1001"]


def test_every_bad_row_is_reported_by_index_and_field_and_nothing_is_written(as_manager, partner):
    rows = [
        {"external_id": "D1", "account": "A9", "amount": "10", "created_at": "2026-03-10", "status": "open"},
        {"external_id": "D2", "account": "A9", "amount": "-5", "created_at": "2026-03-10", "status": "won"},
        {"external_id": "D3", "amount": "10", "created_at": "yesterday", "status": "open", "colour": "red"},
        "not an object",
        {"external_id": "D1", "account": "A9", "amount": "10", "created_at": "2026-03-10", "status": "open"},
    ]
    post(as_manager, "accounts", [{"external_id": "A9", "name": "Globex"}])
    response = post(as_manager, "deals", rows)
    assert response.status_code == 400
    fields = error_of(response)["fields"]
    assert fields["rows.1.amount"] == ["must be greater than 0"]
    assert fields["rows.1.closed_at"] == ["a won deal needs closed_at"]
    assert fields["rows.2.account"] == ["is required"]
    assert "rows.2.created_at" in fields and "rows.2.colour" in fields
    assert fields["rows.3"] == ["must be an object"]
    assert fields["rows.4.external_id"] == ["'D1' appears twice (first at index 0)"]
    assert "rows.0.account" not in fields
    assert not Deal.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"rows": []},
        {"system": "Sales Force", "rows": [{"external_id": "1", "name": "x"}]},
        {"system": "crm", "rows": "nope"},
        {"system": "crm", "rows": [{"external_id": {"a": 1}, "name": "x"}]},
        {"system": "crm", "rows": [{"external_id": "x" * 100, "name": "x"}]},
        {"system": "crm", "rows": [{"external_id": "a\u0000b", "name": "x"}]},
        {"system": "crm", "rows": [{"external_id": "1", "name": True}]},
    ],
)
def test_malformed_bulk_requests_are_400s(as_manager, body):
    response = as_manager.post(f"{API}/accounts/bulk/", body, format="json")
    assert response.status_code == 400, response.content
    assert not Account.objects.exists()


def test_a_lone_surrogate_in_a_row_is_a_400(as_manager):
    raw = '{"system": "crm", "rows": [{"external_id": "1", "name": "x\\udc80"}]}'
    response = as_manager.post(f"{API}/accounts/bulk/", raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert not Account.objects.exists()


def test_partner_users_cannot_bulk_upsert(as_admin_a):
    assert post(as_admin_a, "accounts", [{"external_id": "1", "name": "x"}]).status_code == 403
