"""MDF rules, with every amount computed by hand (docs/mdf.md)."""

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings

from events.models import Event
from kpis.models import CostEntry, CostEntryLink
from mdf import services
from mdf.models import MdfClaim, MdfRequest
from mdf.quarters import parse_quarter, quarter_of
from mdf.selectors import budget_for, figures_of
from tests.factories import DealFactory, DealRegistrationFactory, PartnerFactory, StaffUserFactory
from tests.support.mdf import AFTER, approve, claim, png_bytes, png_upload, submit

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def manager():
    return StaffUserFactory(username="mdf-manager")


@pytest.fixture
def partner():
    return PartnerFactory(name="Alpha", tier="Gold")


@pytest.fixture
def budget(partner, manager):
    return services.budget_set(quarter="2026-Q2", amount=D("10000.00"), partner=partner, changed_by=manager)


def test_quarters_are_calendar_quarters():
    q = parse_quarter("2026-Q2")
    assert (q.starts_on, q.ends_on) == (date(2026, 4, 1), date(2026, 6, 30))
    assert quarter_of(date(2026, 12, 31)).label == "2026-Q4"
    assert parse_quarter("2026-Q4").next().label == "2027-Q1"
    with pytest.raises(ValueError, match="is not a quarter"):
        parse_quarter("2026-Q5")


def test_the_remaining_budget_is_the_amount_less_what_requests_and_claims_hold(partner, manager, budget):
    pending = submit(partner, amount="3000.00")  # holds 3000 while undecided
    approved = approve(submit(partner, amount="2500.00"), manager, amount="2000.00")  # holds 2000
    rejected = submit(partner, amount="1500.00")
    services.request_decide(request=rejected, decided_by=manager, approve=False, comment="Out of scope")
    expired = approve(submit(partner, amount="1000.00"), manager, deadline=date(2026, 5, 31))
    settled = approve(submit(partner, amount="1500.00"), manager)  # claimed 1400, approved 1200, paid
    services.claim_decide(claim=claim(settled, amount="1400.00"), decided_by=manager, approve=True,
                          amount_approved=D("1200.00"))  # fmt: skip
    services.claim_reimburse(claim=settled.claims.get(), reimbursed_by=manager, on=AFTER)
    assert services.requests_expire(today=date(2026, 6, 1)) == 1

    figures = figures_of(budget)
    assert (figures.pending, figures.approved_open, figures.claims_approved, figures.reimbursed) == (
        D("3000.00"), D("2000.00"), D("0.00"), D("1200.00"),
    )  # fmt: skip
    assert figures.expired == D("1000.00")
    # 10000 - (3000 + 2000 + 1200) = 3800
    assert (figures.reserved, figures.remaining) == (D("6200.00"), D("3800.00"))
    assert [r.status for r in (pending, approved, expired)] == ["submitted", "approved", "approved"]
    assert MdfRequest.objects.get(pk=expired.pk).status == "expired"

    with pytest.raises(ValidationError) as refused:
        submit(partner, amount="3800.01")
    message = refused.value.message_dict["amount_requested"][0]
    assert "3800.01 is above the remaining 2026-Q2 budget: 3800.00 of 10000.00 is left" in message
    submit(partner, amount="3800.00")
    assert figures_of(budget).remaining == D("0.00")


def test_a_request_needs_a_budget_for_the_quarter_its_activity_starts_in(partner):
    with pytest.raises(ValidationError) as refused:
        submit(partner)
    assert "No MDF budget covers 2026-Q2" in refused.value.message_dict["starts_on"][0]


def test_a_tier_pool_is_shared_and_a_partners_own_budget_comes_first(manager):
    gold_a, gold_b = PartnerFactory(tier="Gold"), PartnerFactory(tier="Gold")
    pool = services.budget_set(quarter="2026-Q2", amount=D("1000.00"), tier="Gold", changed_by=manager)
    submit(gold_a, amount="700.00")
    with pytest.raises(ValidationError, match="300.00 of 1000.00 is left"):
        submit(gold_b, amount="400.00")
    own = services.budget_set(quarter="2026-Q2", amount=D("500.00"), partner=gold_b, changed_by=manager)
    assert budget_for(gold_b, "2026-Q2") == own
    assert submit(gold_b, amount="400.00").budget == own
    assert figures_of(pool).remaining == D("300.00")


def test_a_budget_never_goes_below_what_it_holds(partner, manager, budget):
    submit(partner, amount="4000.00")
    with pytest.raises(ValidationError, match="below the 4000.00"):
        services.budget_set(quarter="2026-Q2", amount=D("3999.99"), partner=partner, changed_by=manager)
    services.budget_set(quarter="2026-Q2", amount=D("4000.00"), partner=partner, changed_by=manager)
    budget.refresh_from_db()
    assert budget.amount == D("4000.00")


def test_a_budget_is_for_a_partner_or_a_tier_not_both(partner, manager):
    with pytest.raises(ValidationError):
        services.budget_set(quarter="2026-Q2", amount=D("1.00"), partner=partner, tier="Gold")
    with pytest.raises(ValidationError):
        services.budget_set(quarter="2026-Q2", amount=D("1.00"))
    with pytest.raises(ValidationError, match="is not a quarter"):
        services.budget_set(quarter="Q2", amount=D("1.00"), tier="Gold")


def test_approval_and_rejection_record_their_comment_and_event(partner, manager, budget):
    request = submit(partner, amount="800.00")
    with pytest.raises(ValidationError, match="above the 800.00 requested"):
        approve(request, manager, amount="800.01")
    with pytest.raises(ValidationError) as no_comment:
        services.request_decide(request=request, decided_by=manager, approve=False)
    assert "comment" in no_comment.value.message_dict
    decided = services.request_decide(request=request, decided_by=manager, approve=True, comment="Go",
                                      amount_approved=D("600.00"))  # fmt: skip
    expected = ("approved", D("600.00"), date(2026, 6, 11))  # 60 days after the activity ends
    assert (decided.status, decided.amount_approved, decided.claim_deadline) == expected
    assert figures_of(budget).remaining == D("9400.00")  # the 200 not approved is back
    with pytest.raises(ValidationError, match="already approved"):
        approve(request, manager)
    types = list(Event.objects.order_by("id").values_list("type", flat=True))
    assert types == ["mdf_request.submitted", "mdf_request.decided"]


def test_partial_claim_approval_stays_within_claimed_and_approved(partner, manager, budget):
    request = approve(submit(partner, amount="1000.00"), manager, amount="900.00")
    with pytest.raises(ValidationError, match="above the 900.00 approved"):
        claim(request, amount="900.01")
    submitted = claim(request, amount="850.00")
    with pytest.raises(ValidationError, match="already has a claim"):
        claim(request, amount="10.00")
    with pytest.raises(ValidationError, match="above the 850.00 claimed"):
        services.claim_decide(claim=submitted, decided_by=manager, approve=True, amount_approved=D("850.01"))
    decided = services.claim_decide(
        claim=submitted, decided_by=manager, approve=True, amount_approved=D("700.00")
    )
    assert (decided.status, decided.amount_approved) == ("approved", D("700.00"))
    assert figures_of(budget).remaining == D("9300.00")  # 10000 - 700


def test_a_rejected_claim_may_be_followed_by_another(partner, manager, budget):
    request = approve(submit(partner, amount="500.00"), manager)
    first = claim(request, amount="500.00")
    services.claim_decide(claim=first, decided_by=manager, approve=False, comment="Invoice unreadable")
    second = claim(request, amount="450.00")
    assert second.status == "submitted"
    assert figures_of(budget).remaining == D("9500.00")  # the approved 500 is held until the claim settles


def test_a_claim_without_proof_cannot_be_approved(partner, manager, budget):
    request = approve(submit(partner, amount="500.00"), manager)
    bare = claim(request, amount="500.00", files=[])
    with pytest.raises(ValidationError, match="no proof of performance"):
        services.claim_decide(claim=bare, decided_by=manager, approve=True)
    services.proof_add(claim=bare, upload=png_upload(), uploaded_by=None)
    assert services.claim_decide(claim=bare, decided_by=manager, approve=True).status == "approved"


def test_claims_come_after_the_activity_and_before_the_deadline(partner, manager, budget):
    request = approve(submit(partner, amount="500.00"), manager, deadline=date(2026, 5, 1))
    with pytest.raises(ValidationError, match="once the activity has ended"):
        services.claim_submit(
            request=request, submitted_by=None, amount_claimed=D("1.00"), today=date(2026, 4, 11)
        )
    with pytest.raises(ValidationError, match="deadline passed on 2026-05-01"):
        services.claim_submit(
            request=request, submitted_by=None, amount_claimed=D("1.00"), today=date(2026, 5, 2)
        )


def test_expiry_releases_unclaimed_funds_but_not_those_under_a_live_claim(partner, manager, budget):
    idle = approve(submit(partner, amount="1000.00"), manager, deadline=date(2026, 6, 30))
    claimed = approve(submit(partner, amount="2000.00"), manager, deadline=date(2026, 6, 30))
    services.claim_submit(
        request=claimed, submitted_by=None, amount_claimed=D("2000.00"), today=date(2026, 6, 1)
    )
    assert figures_of(budget).remaining == D("7000.00")
    assert services.requests_expire(today=date(2026, 6, 30)) == 0  # the deadline day still counts
    assert services.requests_expire(today=date(2026, 7, 1)) == 1
    assert services.requests_expire(today=date(2026, 7, 1)) == 0  # twice: nothing more
    idle.refresh_from_db()
    claimed.refresh_from_db()
    assert (idle.status, claimed.status) == ("expired", "approved")
    assert figures_of(budget).remaining == D("8000.00")
    assert Event.objects.filter(type="mdf_request.expired", object_id=str(idle.pk)).count() == 1


def test_a_manager_moves_the_claim_deadline(partner, manager, budget):
    request = approve(submit(partner), manager, deadline=date(2026, 5, 1))
    services.request_set_claim_deadline(request=request, claim_deadline=date(2026, 9, 30), changed_by=manager)
    assert services.requests_expire(today=date(2026, 6, 1)) == 0
    with pytest.raises(ValidationError, match="before the activity ends"):
        services.request_set_claim_deadline(
            request=request, claim_deadline=date(2026, 4, 1), changed_by=manager
        )


def test_reimbursement_books_exactly_one_cost_with_its_links(partner, manager, budget):
    deal = DealFactory(sourcing_partner=partner, amount=D("5000.00"))
    registration = DealRegistrationFactory(partner=partner)
    request = approve(submit(partner, amount="1000.00"), manager)
    submitted = claim(request, amount="900.00", deal_ids=[deal.pk], registration_ids=[registration.pk])
    approved = services.claim_decide(
        claim=submitted, decided_by=manager, approve=True, amount_approved=D("750.00")
    )
    first = services.claim_reimburse(claim=approved, reimbursed_by=manager, on=date(2026, 12, 1))
    again = services.claim_reimburse(claim=approved, reimbursed_by=manager, on=date(2026, 12, 2))

    cost = CostEntry.objects.get()
    assert (cost.source, cost.reference, cost.category, cost.partner, cost.amount, cost.date) == (
        "mdf_reimbursement", f"mdf-claim:{submitted.pk}", "mdf", partner, D("750.00"), date(2026, 12, 1),
    )  # fmt: skip
    assert first.cost_entry == again.cost_entry == cost
    assert set(CostEntryLink.objects.values_list("deal_id", "registration_id")) == {
        (deal.pk, None), (None, registration.pk),
    }  # fmt: skip
    assert Event.objects.filter(type="mdf_claim.reimbursed").count() == 1
    assert figures_of(budget).reimbursed == D("750.00")


def test_only_an_approved_claim_is_reimbursed(partner, manager, budget):
    submitted = claim(approve(submit(partner), manager))
    with pytest.raises(ValidationError, match="only an approved claim"):
        services.claim_reimburse(claim=submitted, reimbursed_by=manager)
    assert not CostEntry.objects.exists()


def test_a_partner_links_only_its_own_registrations_and_deals(partner, manager, budget):
    other = PartnerFactory()
    foreign_deal = DealFactory(sourcing_partner=other)
    foreign_registration = DealRegistrationFactory(partner=other)
    request = approve(submit(partner), manager)
    with pytest.raises(ValidationError) as refused:
        claim(request, deal_ids=[foreign_deal.pk], registration_ids=[foreign_registration.pk])
    assert set(refused.value.message_dict) == {"deals", "registrations"}
    assert not MdfClaim.objects.exists()


def test_proof_files_are_checked_by_content_and_size(partner, manager, budget):
    request = approve(submit(partner), manager)
    text_as_pdf = SimpleUploadedFile(
        "invoice.pdf", b"just some text, not a PDF", content_type="application/pdf"
    )
    with pytest.raises(ValidationError, match="Upload a PDF, PNG, JPEG or WebP file"):
        claim(request, files=[text_as_pdf])
    html_as_png = SimpleUploadedFile(
        "photo.png", b"<html><script>alert(1)</script></html>", content_type="image/png"
    )
    with pytest.raises(ValidationError, match="checked by its content"):
        claim(request, files=[html_as_png])
    too_big = pytest.raises(ValidationError, match="the limit is 1 KB a file")
    with override_settings(MDF_PROOF_MAX_BYTES=50), too_big:
        claim(request, files=[png_upload()])
    too_many = pytest.raises(ValidationError, match="at most 1 files a claim")
    with override_settings(MDF_PROOF_MAX_FILES=1), too_many:
        claim(request, files=[png_upload(), png_upload()])
    # A PNG named .pdf is stored as what it is.
    accepted = claim(request, files=[SimpleUploadedFile("scan.pdf", png_bytes())])
    proof = accepted.files.get()
    assert (proof.content_type, proof.name, proof.file.name.endswith(".png")) == (
        "image/png",
        "scan.pdf",
        True,
    )
    assert proof.file.read() == png_bytes()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_that_together_exceed_the_budget_one_is_refused():
    partner = PartnerFactory(tier="")
    services.budget_set(quarter="2026-Q2", amount=D("1000.00"), partner=partner)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def request() -> None:
        try:
            barrier.wait(timeout=10)
            submit(partner, amount="600.00")
            outcomes.append("accepted")
        except ValidationError as exc:
            outcomes.append(exc.message_dict["amount_requested"][0])
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(outcomes) == 2 and outcomes.count("accepted") == 1
    refusal = next(o for o in outcomes if o != "accepted")
    assert "600.00 is above the remaining 2026-Q2 budget: 400.00 of 1000.00 is left" in refusal
    assert MdfRequest.objects.count() == 1


def test_the_expire_command_says_how_many_it_expired(partner, manager, budget):
    from io import StringIO

    from django.core.management import CommandError, call_command

    approve(submit(partner), manager, deadline=date(2026, 5, 1))
    out = StringIO()
    call_command("expire_mdf", "--today", "2026-05-02", stdout=out)
    assert out.getvalue().startswith("1 MDF request(s) expired")
    with pytest.raises(CommandError, match="is not a date"):
        call_command("expire_mdf", "--today", "tomorrow")
