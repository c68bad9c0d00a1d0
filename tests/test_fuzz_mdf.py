"""Property-based fuzz of the MDF pages and forms: whatever a browser sends, never a 500."""

from decimal import Decimal

import pytest
from django.test import Client
from hypothesis import example, given
from hypothesis import strategies as st

from mdf import services
from tests.fuzzing import fuzz_settings, maybe_valid, query_pairs, query_string, send
from tests.support.api import *  # noqa: F403
from tests.support.mdf import approve, claim, png_upload, submit

pytestmark = pytest.mark.django_db

MDF_PAGES = (
    "/dashboard/mdf/",
    "/dashboard/mdf/requests/",
    "/dashboard/mdf/claims/",
    "/portal/funds/",
    "/portal/funds/requests/new/",
    "/portal/funds/requests/{request}/",
)


@pytest.fixture
def mdf_site(world_a, manager, admin_a):
    services.budget_set(quarter="2026-Q2", amount=Decimal("5000.00"), partner=world_a.partner)
    request = approve(submit(world_a.partner, amount="1000.00"), manager)
    pending = submit(world_a.partner, amount="500.00", title="Pending")
    made = claim(request, amount="900.00", files=[png_upload()])
    clients = {}
    for name, user in (("staff", manager), ("partner", admin_a)):
        clients[name] = Client()
        clients[name].force_login(user)
    return {"clients": clients, "request": request, "pending": pending, "claim": made}


@fuzz_settings(max_examples=40)
@given(
    page=st.sampled_from(MDF_PAGES),
    pairs=query_pairs(("status", "quarter", "q", "page", "edit")),
    persona=st.sampled_from(["staff", "partner"]),
)
@example(page="/dashboard/mdf/", pairs=[("edit", "99999999999999999999")], persona="staff")
def test_mdf_pages_answer_any_query_without_a_server_error(mdf_site, page, pairs, persona):
    path = page.format(request=mdf_site["request"].pk)
    query = query_string(pairs)
    send(f"GET {path}?{query}", lambda: mdf_site["clients"][persona].get(path, QUERY_STRING=query))


@fuzz_settings(max_examples=40)
@given(
    activity_type=maybe_valid("event", "webinar"),
    title=maybe_valid("Booth"),
    starts_on=maybe_valid("2026-05-01", "0001-01-01", "9999-12-31"),
    ends_on=maybe_valid("2026-05-02", "2026-04-30"),
    amount=maybe_valid("100.00", "4000.01", "1E+5"),
    leads=maybe_valid("0", "-1", "99999999999"),
)
def test_the_funds_request_form_never_answers_a_server_error(
    mdf_site, activity_type, title, starts_on, ends_on, amount, leads
):
    data = {
        "activity_type": activity_type,
        "title": title,
        "starts_on": starts_on,
        "ends_on": ends_on,
        "amount_requested": amount,
        "expected_leads": leads,
    }
    client = mdf_site["clients"]["partner"]
    send(f"POST request {data!r}", lambda: client.post("/portal/funds/requests/new/", data))


@fuzz_settings(max_examples=40)
@given(
    target=st.sampled_from(["request", "pending", "claim", "bad"]),
    decision=maybe_valid("approve", "reject"),
    amount=maybe_valid("", "10.00", "0"),
    deadline=maybe_valid("", "2026-12-31", "1999-01-01"),
    comment=maybe_valid("", "No."),
    action=maybe_valid("", "reimburse"),
)
def test_the_staff_decision_forms_never_answer_a_server_error(
    mdf_site, target, decision, amount, deadline, comment, action
):
    client = mdf_site["clients"]["staff"]
    row = mdf_site.get(target)
    pk = str(row.pk) if row is not None else "x\x00"
    if target == "claim":
        data = {"claim": pk, "action": action, f"c{pk}-decision": decision, f"c{pk}-amount_approved": amount,
                f"c{pk}-comment": comment}  # fmt: skip
        send(f"POST claims {data!r}", lambda: client.post("/dashboard/mdf/claims/", data))
    else:
        data = {"request": pk, f"q{pk}-decision": decision, f"q{pk}-amount_approved": amount,
                f"q{pk}-claim_deadline": deadline, f"q{pk}-comment": comment,
                f"d{pk}-claim_deadline": deadline}  # fmt: skip
        send(f"POST requests {data!r}", lambda: client.post("/dashboard/mdf/requests/", data))
    budget = {"quarter": maybe_quarter(deadline), "tier": comment, "amount": amount}
    send(f"POST budget {budget!r}", lambda: client.post("/dashboard/mdf/", budget))


def maybe_quarter(text: str) -> str:
    return "2026-Q3" if text == "2026-12-31" else text
