"""The Django admin through the real HTTP layer: pages load, lists have no N+1, actions call services."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deals.models import Deal, DealRegistration
from deals.services import registration_submit
from kpis.models import ForecastRow, ForecastSnapshot, KpiRun
from partners.models import Partner
from partners.roles import StaffRole
from tests.factories import (
    AccountFactory,
    DealFactory,
    DealRegistrationFactory,
    JoinSourceFactory,
    PartnerFactory,
    PartnerUserFactory,
    StaffUserFactory,
    SuperUserFactory,
    TouchFactory,
)

pytestmark = pytest.mark.django_db

FACTORIES = {
    "partners.joinsource": JoinSourceFactory,
    "partners.partner": PartnerFactory,
    "partners.partneruser": PartnerUserFactory,
    "deals.account": AccountFactory,
    "deals.deal": lambda: DealFactory(sourcing_partner=PartnerFactory()),
    "deals.touch": TouchFactory,
    "deals.dealregistration": lambda: DealRegistrationFactory(conflict_with=DealRegistrationFactory()),
}


def _url(model: str, view: str, *args) -> str:
    app_label, model_name = model.split(".")
    return reverse(f"admin:{app_label}_{model_name}_{view}", args=args)


@pytest.fixture
def manager_client(client):
    client.force_login(StaffUserFactory(username="mia", role=StaffRole.PARTNER_MANAGER))
    return client


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize("model", FACTORIES)
def test_every_model_has_a_working_changelist_and_change_form(manager_client, model):
    row = FACTORIES[model]()
    assert manager_client.get(_url(model, "changelist")).status_code == 200
    assert manager_client.get(_url(model, "changelist"), {"q": "x"}).status_code == 200
    change = manager_client.get(_url(model, "change", row.pk))
    assert change.status_code == 200
    assert str(row) in change.content.decode()


@pytest.mark.parametrize("model", [m for m in FACTORIES if m != "deals.dealregistration"])
def test_every_editable_model_has_an_add_form(manager_client, model):
    assert manager_client.get(_url(model, "add")).status_code == 200


def test_registrations_cannot_be_added_in_the_admin(manager_client):
    assert manager_client.get(_url("deals.dealregistration", "add")).status_code == 403


@pytest.mark.parametrize("model", FACTORIES)
def test_changelist_queries_do_not_grow_with_rows(manager_client, model):
    FACTORIES[model]()
    with CaptureQueriesContext(connection) as one_row:
        manager_client.get(_url(model, "changelist"))
    for _ in range(4):
        FACTORIES[model]()
    with CaptureQueriesContext(connection) as five_rows:
        response = manager_client.get(_url(model, "changelist"))
    assert response.status_code == 200
    assert len(five_rows.captured_queries) == len(one_row.captured_queries)


def test_sales_ops_can_read_but_not_change(client):
    client.force_login(StaffUserFactory(role=StaffRole.SALES_OPS))
    deal = DealFactory()
    assert client.get(_url("deals.deal", "changelist")).status_code == 200
    assert client.get(_url("deals.deal", "change", deal.pk)).status_code == 200
    assert client.get(_url("deals.deal", "add")).status_code == 403
    response = client.post(_url("deals.deal", "change", deal.pk), {"name": "Renamed"})
    assert response.status_code == 403
    assert Deal.objects.get(pk=deal.pk).name == deal.name


@pytest.mark.parametrize("make_user", [PartnerUserFactory, AnonymousUser], ids=["portal user", "anonymous"])
def test_portal_users_and_visitors_are_sent_to_the_admin_login(client, make_user):
    user = make_user()
    if hasattr(user, "user"):
        client.force_login(user.user)
    response = client.get(_url("deals.deal", "changelist"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


# --- Validation in admin forms -------------------------------------------------------------------


def _deal_form(account, **overrides) -> dict:
    data = {
        "account": account.pk,
        "name": "Big one",
        "amount": "1200.00",
        "created_at_0": "2026-03-10",
        "created_at_1": "10:00:00",
        "closed_at_0": "",
        "closed_at_1": "",
        "status": "open",
        "sourcing_partner": "",
        "key": "",
        "touches-TOTAL_FORMS": "0",
        "touches-INITIAL_FORMS": "0",
        "touches-MIN_NUM_FORMS": "0",
        "touches-MAX_NUM_FORMS": "1000",
    }
    return {**data, **overrides}


def test_the_deal_form_refuses_closing_before_creation_with_the_rule_message(manager_client):
    data = _deal_form(AccountFactory(), status="won", closed_at_0="2026-03-01", closed_at_1="10:00:00")
    response = manager_client.post(_url("deals.deal", "add"), data)
    assert response.status_code == 200
    assert "closed_at is before created_at" in response.content.decode()
    assert Deal.objects.count() == 0


def test_the_deal_form_refuses_a_zero_amount_and_a_won_deal_without_close(manager_client):
    response = manager_client.post(
        _url("deals.deal", "add"), _deal_form(AccountFactory(), amount="0", status="won")
    )
    body = response.content.decode()
    assert "must be greater than 0" in body
    assert "a won deal needs closed_at" in body
    assert Deal.objects.count() == 0


def test_the_deal_form_saves_a_valid_deal(manager_client):
    response = manager_client.post(_url("deals.deal", "add"), _deal_form(AccountFactory()))
    assert response.status_code == 302
    assert Deal.objects.get().amount == Decimal("1200.00")


def test_the_deal_form_refuses_a_touch_by_an_applicant(manager_client):
    deal = DealFactory()
    applicant = PartnerFactory(applied=True, name="Hopeful")
    data = _deal_form(
        deal.account,
        **{
            "touches-TOTAL_FORMS": "1",
            "touches-0-partner": applicant.pk,
            "touches-0-kind": "introduction",
            "touches-0-touched_at_0": "2026-03-11",
            "touches-0-touched_at_1": "09:00:00",
        },
    )
    response = manager_client.post(_url("deals.deal", "change", deal.pk), data)
    assert response.status_code == 200
    assert "Hopeful is not an approved partner (status: applied)" in response.content.decode()
    assert deal.touches.count() == 0


def test_the_partner_form_enforces_the_lifecycle(manager_client):
    partner = PartnerFactory(status="rejected", joined_at=None, name="Turned Down")
    data = {
        "name": partner.name,
        "key": "",
        "type": partner.type,
        "tier": "",
        "status": "active",
        "join_source": partner.join_source_id,
        "applied_at": "2026-01-02",
        "joined_at": "2026-01-01",
        "referred_by": "",
        "manager": "",
        "users-TOTAL_FORMS": "0",
        "users-INITIAL_FORMS": "0",
        "users-MIN_NUM_FORMS": "0",
        "users-MAX_NUM_FORMS": "1000",
    }
    response = manager_client.post(_url("partners.partner", "change", partner.pk), data)
    body = response.content.decode()
    assert response.status_code == 200
    assert "cannot change status from rejected to active" in body
    assert "joined_at (2026-01-01) is before applied_at (2026-01-02)" in body
    assert Partner.objects.get(pk=partner.pk).status == "rejected"


# --- Actions ------------------------------------------------------------------------------------


def _claim(partner_name: str, days_ago: int) -> DealRegistration:
    return registration_submit(
        partner=PartnerFactory(name=partner_name),
        account_name="Acme",
        domain="acme.com",
        amount=Decimal("900.00"),
        submitted_at=timezone.now() - timedelta(days=days_ago),
    )


def _act(client, action: str, registrations, **extra):
    data = {"action": action, "_selected_action": [r.pk for r in registrations], **extra}
    return client.post(_url("deals.dealregistration", "changelist"), data, follow=True)


def test_the_approve_action_opens_the_sourced_deal(manager_client):
    registration = _claim("First Partner", days_ago=3)
    response = _act(manager_client, "approve_registrations", [registration])
    assert response.status_code == 200
    registration.refresh_from_db()
    assert registration.status == "approved"
    assert registration.decided_by.username == "mia"
    assert (registration.deal.sourcing_partner.name, registration.deal.amount) == (
        "First Partner",
        Decimal("900.00"),
    )
    assert any("Approved registrations" in m for m in _messages(response))


def test_the_approve_action_reports_a_conflict_as_a_message(manager_client):
    _claim("First Partner", days_ago=3)
    second = _claim("Second Partner", days_ago=1)
    response = _act(manager_client, "approve_registrations", [second])
    assert response.status_code == 200
    [message] = _messages(response)
    assert message.startswith(f"{second}: override_reason: channel conflict with registration #")
    assert DealRegistration.objects.get(pk=second.pk).status == "submitted"
    assert Deal.objects.count() == 0


def test_the_override_action_asks_for_a_reason_then_approves(manager_client):
    _claim("First Partner", days_ago=3)
    second = _claim("Second Partner", days_ago=1)
    page = _act(manager_client, "override_and_approve_registrations", [second])
    assert page.status_code == 200
    assert "Override reason" in page.content.decode()
    assert "conflicts with" in page.content.decode()
    assert DealRegistration.objects.get(pk=second.pk).status == "submitted"

    _act(
        manager_client,
        "override_and_approve_registrations",
        [second],
        apply="yes",
        reason="Customer's choice",
    )
    second.refresh_from_db()
    assert (second.status, second.conflict_override_reason) == ("approved", "Customer's choice")
    assert second.deal.sourcing_partner.name == "Second Partner"


def test_the_reject_action_needs_a_reason(manager_client):
    registration = _claim("First Partner", days_ago=3)
    page = _act(manager_client, "reject_registrations", [registration])
    assert page.status_code == 200 and "Reason" in page.content.decode()

    again = _act(manager_client, "reject_registrations", [registration], apply="yes", reason="   ")
    assert again.status_code == 200
    assert "This field is required." in again.content.decode()
    assert DealRegistration.objects.get(pk=registration.pk).status == "submitted"

    _act(
        manager_client, "reject_registrations", [registration], apply="yes", reason="Direct deal already open"
    )
    registration.refresh_from_db()
    assert (registration.status, registration.decision_reason) == ("rejected", "Direct deal already open")


def test_rejecting_an_approved_registration_is_reported_not_a_server_error(manager_client):
    registration = _claim("First Partner", days_ago=3)
    _act(manager_client, "approve_registrations", [registration])
    response = _act(
        manager_client, "reject_registrations", [registration], apply="yes", reason="Changed my mind"
    )
    assert response.status_code == 200
    assert _messages(response) == [
        f"{DealRegistration.objects.get(pk=registration.pk)}: status: only a submitted registration can be "
        "rejected; this one is approved"
    ]


def test_sales_ops_cannot_run_the_decision_actions(client):
    client.force_login(StaffUserFactory(role=StaffRole.SALES_OPS))
    registration = _claim("First Partner", days_ago=3)
    _act(client, "approve_registrations", [registration])
    assert DealRegistration.objects.get(pk=registration.pk).status == "submitted"


def test_the_partner_actions_approve_and_reject_applications(client):
    client.force_login(SuperUserFactory())
    applicant, other, joined = PartnerFactory(applied=True), PartnerFactory(applied=True), PartnerFactory()
    url = _url("partners.partner", "changelist")
    response = client.post(
        url, {"action": "approve_applications", "_selected_action": [applicant.pk, joined.pk]}, follow=True
    )
    assert response.status_code == 200
    client.post(url, {"action": "reject_applications", "_selected_action": [other.pk]})
    statuses = dict(Partner.objects.values_list("pk", "status"))
    assert statuses == {applicant.pk: "active", other.pk: "rejected", joined.pk: "active"}
    assert Partner.objects.get(pk=applicant.pk).joined_at is not None
    assert (
        f"{joined.name}: status: only an application can be approved; {joined.name} is active"
        in _messages(response)
    )


def test_the_deal_form_refuses_implausible_amounts_and_dates_with_the_shared_messages(manager_client):
    for amount, message in (
        ("1E+5", "is not a number in plain notation with ASCII digits"),
        ("٣", "is not a number in plain notation with ASCII digits"),
        ("10000000000", "must be below 10,000,000,000 (at most 12 digits)"),
    ):
        response = manager_client.post(_url("deals.deal", "add"), _deal_form(AccountFactory(), amount=amount))
        assert message in response.content.decode(), amount
    response = manager_client.post(
        _url("deals.deal", "add"), _deal_form(AccountFactory(), created_at_0="1999-12-31")
    )
    assert "1999-12-31 is outside the accepted range 2000-01-01 to" in response.content.decode()
    assert Deal.objects.count() == 0


def _forecast(run: KpiRun | None, as_of: str, sourced: str) -> ForecastSnapshot:
    snapshot = ForecastSnapshot.objects.create(
        run=run, as_of=as_of, quarter="2026-Q4", computed_at=timezone.now(), duration_seconds=1.5
    )
    ForecastRow.objects.create(
        snapshot=snapshot,
        scope="program",
        scope_id=0,
        position=0,
        name=f"Program as of {as_of}",
        sourced=Decimal(sourced),
        influenced=Decimal("0.00"),
        backtest_sourced=Decimal("0.00"),
        backtest_influenced=Decimal("0.00"),
        actual_sourced=Decimal("0.00"),
        actual_influenced=Decimal("0.00"),
    )
    return snapshot


def test_stored_forecasts_are_listed_and_filtered_but_never_added_changed_or_deleted(client):
    client.force_login(SuperUserFactory(username="root"))
    run = KpiRun.objects.create(trigger=KpiRun.Trigger.NIGHTLY, status=KpiRun.Status.SUCCEEDED)
    published = _forecast(run, "2026-11-30", "1250.00")
    requested = _forecast(None, "2026-12-01", "980.00")
    snapshots, rows = _url("kpis.forecastsnapshot", "changelist"), _url("kpis.forecastrow", "changelist")

    listed = client.get(snapshots)
    assert listed.status_code == 200
    assert [s.pk for s in listed.context["cl"].result_list] == [requested.pk, published.pk]
    assert _url("kpis.forecastsnapshot", "add") not in listed.content.decode()
    by_run = client.get(snapshots, {"run__id__exact": run.pk}).context["cl"].result_list
    assert [s.pk for s in by_run] == [published.pk]
    by_day = client.get(snapshots, {"as_of__gte": "2026-12-01"}).context["cl"].result_list
    assert [s.pk for s in by_day] == [requested.pk]
    assert [r.name for r in client.get(rows).context["cl"].result_list] == [
        "Program as of 2026-12-01",
        "Program as of 2026-11-30",
    ]
    by_run = client.get(rows, {"snapshot__run__id__exact": run.pk}).context["cl"].result_list
    assert [(r.name, r.sourced) for r in by_run] == [("Program as of 2026-11-30", Decimal("1250.00"))]

    for model, row in (("kpis.forecastsnapshot", published), ("kpis.forecastrow", published.rows.get())):
        assert client.get(_url(model, "add")).status_code == 403
        change = _url(model, "change", row.pk)
        assert client.get(change).status_code == 200  # a read-only view
        assert client.post(change, {"name": "forged", "quarter": "2027-Q1"}).status_code == 403
        assert client.post(_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert ForecastSnapshot.objects.get(pk=published.pk).quarter == "2026-Q4"
    assert ForecastRow.objects.get(snapshot=published).name == "Program as of 2026-11-30"
