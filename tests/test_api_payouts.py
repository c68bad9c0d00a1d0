"""The payout endpoints: staff batches, scoped payouts and statements, members refused."""

from datetime import date
from decimal import Decimal

import pytest

from economics.models import CommissionSettings
from economics.payout_models import Payout, PayoutBatch
from economics.payouts import payout_batch_create
from kpis.models import CostEntry
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of, ids
from tests.support.payouts import entry


@pytest.fixture
def batch(world_a, world_b):
    settings = CommissionSettings.load()
    settings.minimum_payout = Decimal("50.00")
    settings.save()
    entry(world_a.partner, "80.00", approved_on=date(2026, 10, 2))
    entry(world_b.partner, "30.00", approved_on=date(2026, 10, 4))
    made, _ = payout_batch_create(month=date(2026, 10, 1))
    return made


def test_a_manager_makes_a_batch_once_and_pays_it_once(as_manager, world_a):
    entry(world_a.partner, "80.00", approved_on=date(2026, 10, 2))
    entry(world_a.partner, "-10.00", approved_on=date(2026, 10, 3))
    made = as_manager.post(f"{API}/payout-batches/", {"month": "2026-10"}, format="json")
    assert made.status_code == 201, made.content
    body = made.json()
    assert (body["month"], body["status"], body["amount"], body["payouts"]) == ("2026-10", "open", "70.00", 1)
    again = as_manager.post(f"{API}/payout-batches/", {"month": "2026-10"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == body["id"]

    url = f"{API}/payout-batches/{body['id']}/mark-paid/"
    paid = as_manager.post(url, {"paid_on": "2026-11-05"}, format="json")
    assert paid.status_code == 200 and paid.json()["paid_on"] == "2026-11-05"
    assert as_manager.post(url, {"paid_on": "2026-11-06"}, format="json").json()["paid_on"] == "2026-11-05"
    assert list(CostEntry.objects.values_list("amount", flat=True)) == [Decimal("70.00")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"month": "2026-13"}, "month"),
        ({"month": "2099-01"}, "month"),
        ({}, "month"),
        ({"month": 5}, "month"),
    ],
)
def test_a_bad_month_is_a_400_with_its_field(as_manager, db, body, field):
    response = as_manager.post(f"{API}/payout-batches/", body, format="json")
    assert response.status_code == 400
    assert field in error_of(response)["fields"]
    assert not PayoutBatch.objects.exists()


def test_a_payment_date_before_the_month_is_a_400(as_manager, batch):
    response = as_manager.post(
        f"{API}/payout-batches/{batch.pk}/mark-paid/", {"paid_on": "2026-09-01"}, format="json"
    )
    assert response.status_code == 400 and "paid_on" in error_of(response)["fields"]


def test_sales_ops_read_batches_but_do_not_change_them(as_salesops, batch):
    assert ids(as_salesops.get(f"{API}/payout-batches/")) == {batch.pk}
    assert as_salesops.post(f"{API}/payout-batches/", {"month": "2026-11"}, format="json").status_code == 403
    paid = as_salesops.post(
        f"{API}/payout-batches/{batch.pk}/mark-paid/", {"paid_on": "2026-11-05"}, format="json"
    )
    assert paid.status_code == 403


@pytest.mark.parametrize("persona", ["as_admin_a", "as_member_a", "as_outsider"])
def test_batches_are_staff_only(request, persona, batch):
    client = request.getfixturevalue(persona)
    assert client.get(f"{API}/payout-batches/").status_code == 403
    assert client.get(f"{API}/payout-batches/{batch.pk}/").status_code == 403


def test_a_partner_admin_reads_its_own_payouts_and_statements_only(as_admin_a, batch, world_a, world_b):
    own = Payout.objects.get(partner=world_a.partner)
    other = Payout.objects.get(partner=world_b.partner)
    assert ids(as_admin_a.get(f"{API}/payouts/")) == {own.pk}
    statement = as_admin_a.get(f"{API}/payouts/{own.pk}/statement/")
    assert statement.status_code == 200
    body = statement.json()
    assert (body["balance"], body["amount"], body["status"]) == ("80.00", "80.00", "payable")
    assert [line["amount"] for line in body["lines"]] == ["80.00"]
    assert as_admin_a.get(f"{API}/payouts/{other.pk}/").status_code == 404
    assert as_admin_a.get(f"{API}/payouts/{other.pk}/statement/").status_code == 404


def test_a_partner_member_gets_403_on_payouts_and_statements(as_member_a, batch, world_a):
    own = Payout.objects.get(partner=world_a.partner)
    for url in (f"{API}/payouts/", f"{API}/payouts/{own.pk}/", f"{API}/payouts/{own.pk}/statement/"):
        response = as_member_a.get(url)
        assert response.status_code == 403, url
        assert error_of(response)["code"] == "permission_denied"


def test_staff_list_every_payout_of_a_batch(as_manager, batch):
    body = as_manager.get(f"{API}/payouts/?batch={batch.pk}").json()
    assert sorted((row["partner_name"], row["amount"], row["carried_out"]) for row in body["results"]) == [
        ("Alpha Partners", "80.00", "0.00"),
        ("Bravo Partners", "0.00", "30.00"),
    ]
