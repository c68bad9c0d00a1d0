"""The MDF endpoints: scoping (another partner's rows are 404, members 403), submissions, decisions,
multipart proof upload and reimbursement."""

from datetime import date
from decimal import Decimal

import pytest

from kpis.models import CostEntry
from mdf import services
from mdf.models import MdfClaim, MdfRequest
from tests.support.api import *  # noqa: F403
from tests.support.api import API, error_of, ids
from tests.support.mdf import approve, claim, pdf_upload, png_upload, submit

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def funded(world_a, world_b, manager):
    budget = services.budget_set(quarter="2026-Q2", amount=D("5000.00"), partner=world_a.partner)
    request = approve(submit(world_a.partner, amount="1000.00"), manager)
    return budget, request, claim(request, amount="900.00", files=[png_upload()])


def test_budgets_are_for_staff_with_their_figures(as_manager, as_salesops, as_admin_a, funded):
    budget, _, _ = funded
    body = as_salesops.get(f"{API}/mdf-budgets/").json()
    (row,) = body["results"]
    assert (row["id"], row["amount"], row["approved_open"], row["remaining"]) == (
        budget.pk,
        "5000.00",
        "1000.00",
        "4000.00",
    )
    assert as_manager.get(f"{API}/mdf-budgets/{budget.pk}/").json()["reserved"] == "1000.00"
    assert error_of(as_admin_a.get(f"{API}/mdf-budgets/"))["status"] == 403
    created = as_manager.post(
        f"{API}/mdf-budgets/", {"quarter": "2026-Q3", "tier": "Gold", "amount": "2500.00"}, format="json"
    )
    assert created.status_code == 201 and created.json()["remaining"] == "2500.00"
    assert as_salesops.post(f"{API}/mdf-budgets/", {"quarter": "2026-Q3"}, format="json").status_code == 403


@pytest.mark.parametrize("resource", ["mdf-requests", "mdf-claims"])
def test_partners_see_only_their_own_requests_and_claims(
    as_admin_a, as_admin_b, as_manager, funded, resource
):
    _, request, submitted = funded
    own = request.pk if resource == "mdf-requests" else submitted.pk
    assert ids(as_admin_a.get(f"{API}/{resource}/")) == {own}
    assert ids(as_admin_b.get(f"{API}/{resource}/")) == set()
    assert as_admin_a.get(f"{API}/{resource}/{own}/").status_code == 200
    assert error_of(as_admin_b.get(f"{API}/{resource}/{own}/"))["status"] == 404
    assert as_manager.get(f"{API}/{resource}/{own}/").status_code == 200


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "mdf-requests/"),
        ("get", "mdf-requests/{r}/"),
        ("post", "mdf-requests/"),
        ("get", "mdf-claims/"),
        ("get", "mdf-claims/{c}/"),
        ("post", "mdf-claims/"),
        ("post", "mdf-claims/{c}/files/"),
        ("get", "mdf-budgets/"),
    ],
)
def test_a_partner_member_gets_403_everywhere(as_member_a, as_outsider, funded, method, path):
    _, request, submitted = funded
    url = f"{API}/" + path.format(r=request.pk, c=submitted.pk)
    assert error_of(getattr(as_member_a, method)(url))["status"] == 403
    assert error_of(getattr(as_outsider, method)(url))["status"] == 403


@pytest.mark.parametrize(
    "path",
    [
        "mdf-requests/{r}/approve/",
        "mdf-requests/{r}/reject/",
        "mdf-requests/{r}/claim-deadline/",
        "mdf-claims/{c}/files/",
        "mdf-claims/{c}/approve/",
        "mdf-claims/{c}/reject/",
        "mdf-claims/{c}/reimburse/",
    ],
)
def test_another_partner_gets_404_on_every_write_to_an_object(as_admin_b, funded, path):
    _, request, submitted = funded
    url = f"{API}/" + path.format(r=request.pk, c=submitted.pk)
    assert error_of(as_admin_b.post(url, {}, format="json"))["status"] == 404


def test_a_partner_admin_cannot_decide_its_own(as_admin_a, funded):
    _, request, submitted = funded
    assert (
        error_of(as_admin_a.post(f"{API}/mdf-requests/{request.pk}/approve/", {}, format="json"))["status"]
        == 403
    )
    assert error_of(as_admin_a.post(f"{API}/mdf-claims/{submitted.pk}/reimburse/"))["status"] == 403


def test_a_partner_admin_requests_funds_and_is_refused_above_the_remaining(as_admin_a, world_a, funded):
    body = {
        "activity_type": "webinar",
        "title": "Webinar",
        "starts_on": "2026-05-04",
        "ends_on": "2026-05-04",
        "amount_requested": "4000.01",
    }
    refused = error_of(as_admin_a.post(f"{API}/mdf-requests/", body, format="json"))
    assert refused["status"] == 400
    assert "4000.00 of 5000.00 is left" in refused["fields"]["amount_requested"][0]
    created = as_admin_a.post(f"{API}/mdf-requests/", {**body, "amount_requested": "4000.00"}, format="json")
    assert created.status_code == 201
    assert created.json()["partner"] == world_a.partner.pk and created.json()["quarter"] == "2026-Q2"
    assert error_of(as_admin_a.post(f"{API}/mdf-requests/", {**body, "partner": 1}, format="json"))


def test_decisions_upload_and_reimbursement_through_the_api(
    as_manager, as_admin_a, as_admin_b, world_a, funded
):
    _, request, submitted = funded
    pending = submit(world_a.partner, amount="600.00", title="Roadshow")
    approved = as_manager.post(
        f"{API}/mdf-requests/{pending.pk}/approve/",
        {"amount_approved": "500.00", "claim_deadline": "2026-12-31"},
        format="json",
    )
    assert approved.status_code == 200 and approved.json()["amount_approved"] == "500.00"
    assert (
        error_of(as_manager.post(f"{API}/mdf-requests/{pending.pk}/reject/", {}, format="json"))["status"]
        == 400
    )
    moved = as_manager.post(
        f"{API}/mdf-requests/{pending.pk}/claim-deadline/", {"claim_deadline": "2027-01-31"}, format="json"
    )
    assert moved.json()["claim_deadline"] == "2027-01-31"

    # Upload: multipart, checked by content; another partner's claim is a 404 (above).
    bad = as_admin_a.post(
        f"{API}/mdf-claims/{submitted.pk}/files/",
        {"file": pdf_upload()} | {"file": _fake()},
        format="multipart",
    )
    assert error_of(bad)["status"] == 400
    uploaded = as_admin_a.post(
        f"{API}/mdf-claims/{submitted.pk}/files/", {"file": pdf_upload()}, format="multipart"
    )
    assert uploaded.status_code == 201 and uploaded.json()["content_type"] == "application/pdf"
    assert as_admin_a.get(uploaded.json()["url"]).status_code == 200
    assert as_admin_b.get(uploaded.json()["url"]).status_code == 404

    decided = as_manager.post(
        f"{API}/mdf-claims/{submitted.pk}/approve/", {"amount_approved": "800.00"}, format="json"
    )
    assert decided.json()["status"] == "approved" and len(decided.json()["files"]) == 2
    for _ in range(2):
        paid = as_manager.post(f"{API}/mdf-claims/{submitted.pk}/reimburse/")
        assert paid.status_code == 200 and paid.json()["status"] == "reimbursed"
    assert CostEntry.objects.get().amount == D("800.00")
    assert paid.json()["cost_entry"] == CostEntry.objects.get().pk


def test_a_partner_admin_claims_through_the_api(as_admin_a, as_admin_b, world_a, world_b, manager):
    services.budget_set(quarter="2026-Q1", amount=D("500.00"), partner=world_a.partner)
    request = services.request_decide(
        request=submit(
            world_a.partner, amount="500.00", starts_on=date(2026, 1, 5), ends_on=date(2026, 1, 6)
        ),
        decided_by=manager,
        approve=True,
        claim_deadline=date(2027, 1, 31),
    )
    body = {"request": request.pk, "amount_claimed": "480.00", "leads": 7, "deals": [world_a.deal.pk]}
    assert error_of(as_admin_b.post(f"{API}/mdf-claims/", body, format="json"))["fields"]["request"]
    foreign = error_of(
        as_admin_a.post(f"{API}/mdf-claims/", {**body, "deals": [world_b.deal.pk]}, format="json")
    )
    assert "deals" in foreign["fields"]
    created = as_admin_a.post(f"{API}/mdf-claims/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["deals"] == [world_a.deal.pk]
    assert MdfClaim.objects.get(pk=created.json()["id"]).request == request
    assert MdfRequest.objects.get(pk=request.pk).status == "approved"


def _fake():
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("evil.pdf", b"MZ\x90\x00 not a pdf at all")


def test_lists_filter_by_status_and_the_schema_has_every_mdf_path(as_manager, world_a, funded):
    _, request, submitted = funded
    pending = submit(world_a.partner, amount="100.00", title="Pending")
    assert ids(as_manager.get(f"{API}/mdf-requests/?status=submitted")) == {pending.pk}
    assert ids(as_manager.get(f"{API}/mdf-claims/?status=submitted")) == {submitted.pk}
    assert error_of(as_manager.get(f"{API}/mdf-claims/?status=nonsense"))["status"] == 400
    paths = as_manager.get(f"{API}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    for path in ("mdf-budgets/", "mdf-requests/{id}/approve/", "mdf-requests/{id}/claim-deadline/",
                 "mdf-claims/{id}/files/", "mdf-claims/{id}/reimburse/"):  # fmt: skip
        assert f"{API}/{path}" in paths
    upload = paths[f"{API}/mdf-claims/{{id}}/files/"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
