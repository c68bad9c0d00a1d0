"""MDF pages: the portal's Funds (partner admins only, their own rows only) and the staff queues."""

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from mdf import services
from mdf.models import MdfBudget, MdfClaim, MdfRequest
from tests.support.api import *  # noqa: F403
from tests.support.mdf import approve, claim, png_bytes, png_upload, submit

pytestmark = pytest.mark.django_db
D = Decimal


def web(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def funded(world_a, world_b, manager):
    """Partner A: a 5000 budget for 2026-Q2, an approved request with a claim and its proof file."""
    services.budget_set(quarter="2026-Q2", amount=D("5000.00"), partner=world_a.partner, changed_by=manager)
    request = approve(submit(world_a.partner, amount="1000.00"), manager)
    return request, claim(request, amount="900.00", files=[png_upload()])


def test_a_partner_admin_sees_its_budget_requests_and_claims(admin_a, funded):
    request, submitted = funded
    response = web(admin_a).get("/portal/funds/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-request="{request.pk}"' in html and f'data-claim="{submitted.pk}"' in html
    assert "4,000.00" in html.replace("\u00a0", " ") or "4000.00" in html  # 5000 - 1000 approved
    detail = web(admin_a).get(f"/portal/funds/requests/{request.pk}/")
    assert detail.status_code == 200
    proof = submitted.files.get()
    assert f"/mdf/files/{proof.pk}/" in detail.content.decode()


@pytest.mark.parametrize(
    "path", ["/portal/funds/", "/portal/funds/requests/new/", "/portal/funds/requests/{r}/"]
)
def test_a_partner_member_gets_403_on_funds(member_a, funded, path):
    request, _ = funded
    assert web(member_a).get(path.format(r=request.pk)).status_code == 403


def test_a_member_gets_403_on_a_proof_file(member_a, funded):
    _, submitted = funded
    assert web(member_a).get(f"/mdf/files/{submitted.files.get().pk}/").status_code == 403


def test_another_partner_gets_404_on_requests_claim_forms_and_files(admin_b, funded):
    request, submitted = funded
    other = web(admin_b)
    assert other.get(f"/portal/funds/requests/{request.pk}/").status_code == 404
    assert other.post(f"/portal/funds/requests/{request.pk}/", {"amount_claimed": "1"}).status_code == 404
    assert other.get(f"/mdf/files/{submitted.files.get().pk}/").status_code == 404
    page = other.get("/portal/funds/").content.decode()
    assert f'data-request="{request.pk}"' not in page and "5,000" not in page


def test_proof_files_are_served_to_their_partner_admins_and_staff_only(admin_a, manager, outsider, funded):
    _, submitted = funded
    url = f"/mdf/files/{submitted.files.get().pk}/"
    for user in (admin_a, manager):
        response = web(user).get(url)
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == png_bytes()
        assert response["Content-Type"] == "image/png"
        assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert web(outsider).get(url).status_code == 404
    assert Client().get(url).status_code == 302


def test_a_request_above_the_remaining_budget_is_refused_with_the_amount_left(admin_a, funded):
    form = {
        "activity_type": "webinar",
        "title": "Spring webinar",
        "starts_on": "2026-05-04",
        "ends_on": "2026-05-04",
        "amount_requested": "4000.01",
        "expected_leads": "20",
    }
    refused = web(admin_a).post("/portal/funds/requests/new/", form)
    assert refused.status_code == 400
    assert "4000.00 of 5000.00 is left" in refused.content.decode()
    accepted = web(admin_a).post("/portal/funds/requests/new/", {**form, "amount_requested": "4000.00"})
    assert accepted.status_code == 302
    assert MdfRequest.objects.filter(title="Spring webinar", status="submitted").count() == 1


def test_a_partner_admin_claims_with_proof_and_its_own_deal(admin_a, manager, world_a):
    services.budget_set(quarter="2026-Q1", amount=D("800.00"), partner=world_a.partner, changed_by=manager)
    # world_a's deal was created at T0 (2026-01-15); the activity started the day before.
    from datetime import date

    request = services.request_decide(
        request=submit(
            world_a.partner, amount="800.00", starts_on=date(2026, 1, 14), ends_on=date(2026, 1, 14)
        ),
        decided_by=manager,
        approve=True,
        claim_deadline=date(2027, 3, 31),
    )
    url = f"/portal/funds/requests/{request.pk}/"
    page = web(admin_a).get(url).content.decode()
    assert f'value="{world_a.deal.pk}"' in page
    bad = web(admin_a).post(url, {"amount_claimed": "700.00", "leads": "3",
                                  "proof_files": SimpleUploadedFile("x.pdf", b"not a pdf")})  # fmt: skip
    assert bad.status_code == 400
    assert "checked by its content" in bad.content.decode()
    ok = web(admin_a).post(
        url,
        {
            "amount_claimed": "700.00",
            "leads": "3",
            "deals": [world_a.deal.pk],
            "proof_files": [png_upload("a.png"), png_upload("b.png")],
        },  # fmt: skip
    )
    assert ok.status_code == 302, ok.content.decode()[:2000]
    made = MdfClaim.objects.get(request=request)
    assert (made.amount_claimed, made.files.count(), list(made.deals.all())) == (
        D("700.00"),
        2,
        [world_a.deal],
    )


@pytest.mark.parametrize("path", ["/dashboard/mdf/", "/dashboard/mdf/requests/", "/dashboard/mdf/claims/"])
def test_staff_pages_open_for_staff_and_refuse_partners(manager, salesops, admin_a, funded, path):
    assert web(manager).get(path).status_code == 200
    assert web(salesops).get(path + "?status=").status_code == 200
    assert web(admin_a).get(path).status_code == 403


def test_sales_ops_cannot_decide(salesops, funded):
    request, _ = funded
    response = web(salesops).post("/dashboard/mdf/requests/", {"request": request.pk})
    assert response.status_code == 403


def test_a_manager_sets_a_budget_decides_a_request_and_a_claim_and_reimburses(manager, world_a, funded):
    request, submitted = funded
    staff = web(manager)
    set_budget = staff.post("/dashboard/mdf/", {"quarter": "2026-Q3", "tier": "Gold", "amount": "2500.00"})
    assert set_budget.status_code == 302
    assert MdfBudget.objects.get(quarter="2026-Q3").tier == "Gold"
    too_low = staff.post(
        "/dashboard/mdf/", {"quarter": "2026-Q2", "partner": world_a.partner.pk, "amount": "999.99"}
    )
    assert too_low.status_code == 400 and "already hold" in too_low.content.decode()

    pending = submit(world_a.partner, amount="300.00", title="Roadshow")
    rejected = staff.post(
        "/dashboard/mdf/requests/", {"request": pending.pk, f"q{pending.pk}-decision": "reject"}
    )
    assert rejected.status_code == 400  # a rejection needs its comment
    staff.post(
        "/dashboard/mdf/requests/",
        {
            "request": pending.pk,
            f"q{pending.pk}-decision": "approve",
            f"q{pending.pk}-amount_approved": "250.00",
            f"q{pending.pk}-claim_deadline": "2026-12-31",
        },  # fmt: skip
    )
    pending.refresh_from_db()
    assert (pending.status, pending.amount_approved) == ("approved", D("250.00"))

    c = submitted.pk
    staff.post(
        "/dashboard/mdf/claims/", {"claim": c, f"c{c}-decision": "approve", f"c{c}-amount_approved": "850.00"}
    )
    staff.post("/dashboard/mdf/claims/", {"claim": c, "action": "reimburse"})
    staff.post("/dashboard/mdf/claims/", {"claim": c, "action": "reimburse"})
    done = MdfClaim.objects.get(pk=c)
    assert (done.status, done.amount_approved, done.cost_entry.amount) == (
        "reimbursed",
        D("850.00"),
        D("850.00"),
    )
    assert request.partner.costs.count() == 1
