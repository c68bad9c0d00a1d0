"""Payout pages: managers make, read, pay and export batches; partner admins read their earnings
and statements; members get 403 on every money page; another partner's statement is a 404."""

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import example, given

from economics.models import CommissionSettings
from economics.payout_models import Payout, PayoutBatch
from economics.payouts import payout_batch_create
from kpis.models import CostEntry
from tests.fuzzing import fuzz_settings, maybe_valid, nasty_text, send
from tests.support.api import *  # noqa: F403
from tests.support.api import client_for
from tests.support.payouts import entry

OCT = date(2026, 10, 1)


@pytest.fixture
def batch(world_a, world_b):
    settings = CommissionSettings.load()
    settings.minimum_payout = Decimal("50.00")
    settings.save()
    entry(world_a.partner, "80.00", approved_on=date(2026, 10, 2))
    entry(world_a.partner, "-5.50", approved_on=date(2026, 10, 3))
    entry(world_b.partner, "30.00", approved_on=date(2026, 10, 4))
    made, _ = payout_batch_create(month=OCT)
    return made


def rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_a_manager_makes_the_months_batch_pays_it_and_exports_it(as_manager, world_a, world_b):
    entry(world_a.partner, "80.00", approved_on=date(2026, 10, 2))
    response = as_manager.post("/dashboard/payouts/", {"month": "2026-10"})
    made = PayoutBatch.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/dashboard/payouts/{made.pk}/"
    assert as_manager.post("/dashboard/payouts/", {"month": "2026-10"})["Location"] == response["Location"]

    page = as_manager.get(f"/dashboard/payouts/{made.pk}/")
    assert page.status_code == 200 and "Alpha Partners" in page.content.decode()

    refused = as_manager.post(f"/dashboard/payouts/{made.pk}/paid/", {"paid_on": "2026-09-30"})
    assert refused.status_code == 400 and "on or after 2026-10-01" in refused.content.decode()
    assert (
        as_manager.post(f"/dashboard/payouts/{made.pk}/paid/", {"paid_on": "2026-11-03"}).status_code == 302
    )
    assert (
        as_manager.post(f"/dashboard/payouts/{made.pk}/paid/", {"paid_on": "2026-11-04"}).status_code == 302
    )
    assert list(CostEntry.objects.values_list("amount", "date")) == [(Decimal("80.00"), date(2026, 11, 3))]

    export = as_manager.get(f"/dashboard/payouts/{made.pk}/export.csv")
    payout = Payout.objects.get()
    assert rows(export) == [
        ["partner", "partner_key", "amount", "currency", "period", "reference"],
        ["Alpha Partners", str(world_a.partner.pk), "80.00", "USD", "2026-10", payout.reference],
    ]


@pytest.mark.parametrize("month", ["", "2026-13", "october", "2099-01"])
def test_a_bad_month_is_a_form_error(as_manager, db, month):
    response = as_manager.post("/dashboard/payouts/", {"month": month})
    assert response.status_code == 400
    assert not PayoutBatch.objects.exists()


def test_sales_ops_read_batches_but_neither_make_nor_pay_them(as_salesops, batch):
    assert as_salesops.get("/dashboard/payouts/").status_code == 200
    assert as_salesops.get(f"/dashboard/payouts/{batch.pk}/").status_code == 200
    assert as_salesops.post("/dashboard/payouts/", {"month": "2026-11"}).status_code == 403
    assert (
        as_salesops.post(f"/dashboard/payouts/{batch.pk}/paid/", {"paid_on": "2026-11-03"}).status_code == 403
    )


def test_a_manager_reads_any_partners_statement(as_manager, batch, world_b):
    payout = Payout.objects.get(partner=world_b.partner)
    page = as_manager.get(f"/dashboard/payouts/statements/{payout.pk}/")
    assert page.status_code == 200
    assert "below the minimum payout" in page.content.decode()


def test_portal_users_get_no_manager_payout_page(batch, admin_a, member_a):
    payout = Payout.objects.filter(batch=batch).first()
    for user in (admin_a, member_a):
        client = client_for(user)
        for url in (
            "/dashboard/payouts/",
            f"/dashboard/payouts/{batch.pk}/",
            f"/dashboard/payouts/{batch.pk}/export.csv",
            f"/dashboard/payouts/statements/{payout.pk}/",
        ):
            assert client.get(url).status_code == 403, url
        assert (
            client.post(f"/dashboard/payouts/{batch.pk}/paid/", {"paid_on": "2026-11-03"}).status_code == 403
        )


def test_a_partner_admin_sees_its_earnings_and_statements(as_admin_a, batch, world_a):
    entry(world_a.partner, "12.00", approved_on=date(2026, 11, 2), status="pending")
    page = as_admin_a.get("/portal/earnings/")
    assert page.status_code == 200
    body = page.content.decode()
    # 80.00 - 5.50 approved, in the open batch; 12.00 pending.
    assert "$74.50" in body and "$12.00" in body and "2026-10" in body
    payout = Payout.objects.get(partner=world_a.partner)
    statement = as_admin_a.get(f"/portal/earnings/statements/{payout.pk}/")
    assert statement.status_code == 200 and "Commission statement 2026-10" in statement.content.decode()
    lines = rows(as_admin_a.get(f"/portal/earnings/statements/{payout.pk}/?format=csv"))
    assert lines[0] == ["date", "kind", "basis", "source", "status", "amount"]
    assert [line[-1] for line in lines[1:]] == ["0.00", "80.00", "-5.50", "74.50", "74.50", "0.00"]


def test_another_partners_statement_is_a_404(as_admin_a, batch, world_b):
    payout = Payout.objects.get(partner=world_b.partner)
    assert as_admin_a.get(f"/portal/earnings/statements/{payout.pk}/").status_code == 404
    assert as_admin_a.get(f"/portal/earnings/statements/{payout.pk}/?format=csv").status_code == 404


def test_a_partner_member_gets_403_on_every_money_page(as_member_a, batch, world_a):
    payout = Payout.objects.get(partner=world_a.partner)
    for url in (
        "/portal/earnings/",
        f"/portal/earnings/statements/{payout.pk}/",
        f"/portal/earnings/statements/{payout.pk}/?format=csv",
    ):
        assert as_member_a.get(url).status_code == 403, url
    assert "/portal/earnings/" not in as_member_a.get("/portal/").content.decode()


@fuzz_settings(max_examples=40)
@given(
    month=maybe_valid("2026-10", "2026-11", "2026-12"),
    paid_on=maybe_valid("2026-11-05", "2026-09-30"),
    statement=nasty_text,
)
@example(month="0000-01", paid_on="0001-01-01", statement="")
@example(month="2026-11", paid_on="9999-12-31", statement="csv")
def test_the_payout_forms_never_answer_a_server_error(
    as_manager, as_admin_a, batch, month, paid_on, statement
):
    send(f"POST batches month={month!r}", lambda: as_manager.post("/dashboard/payouts/", {"month": month}))
    send(
        f"POST paid paid_on={paid_on!r}",
        lambda: as_manager.post(f"/dashboard/payouts/{batch.pk}/paid/", {"paid_on": paid_on}),
    )
    payout = Payout.objects.filter(batch=batch).first()
    send(
        f"GET statement format={statement!r}",
        lambda: as_admin_a.get(f"/portal/earnings/statements/{payout.pk}/", {"format": statement}),
    )
