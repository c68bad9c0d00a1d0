"""Reading the trail: the staff page and its filters, a partner's registration history, and an
append-only log (read-only admin; on PostgreSQL a trigger refuses UPDATE and DELETE)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from api.services import api_token_create
from deals.services import deal_update, registration_approve, registration_submit
from deals.tasks import expire_registrations
from partners.roles import StaffRole
from prm.acting import Actor, Channel, acting
from tests.factories import (
    T0,
    DealRegistrationFactory,
    JoinSourceFactory,
    PartnerUserFactory,
    StaffUserFactory,
    SuperUserFactory,
)
from tests.support.api import *  # noqa: F403
from tests.support.api import API
from tests.test_audit_trail import _bearer, _entries
from tests.test_dashboard_accessibility import unlabelled

AUDIT = "/dashboard/audit/"


def _shown(response) -> list[LogEntry]:
    assert response.status_code == 200, response.content[:500]
    return [view.entry for view in response.context["entries"]]


@pytest.fixture
def staff_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def three_channels(manager, world_a):
    """A deal changed through the API (token), a join source through a command, a registration
    expired by the task; returns those three objects."""
    _, secret = api_token_create(user=manager, name="CRM sync")
    response = _bearer(secret).patch(f"{API}/deals/{world_a.deal.pk}/", {"amount": "1500.00"}, format="json")
    assert response.status_code == 200
    with acting(channel=Channel.COMMAND, actor=Actor.command("tidy_sources")):
        source = JoinSourceFactory(name="Trade fair")
    lapsed = world_a.registration  # submitted at T0, protected for 90 days: long lapsed
    assert expire_registrations.apply().get() == 1
    return world_a.deal, source, lapsed


def test_the_page_lists_changes_newest_first_with_before_and_after(staff_client, three_channels):
    deal, source, lapsed = three_channels
    response = staff_client.get(AUDIT)
    shown = _shown(response)
    assert shown == list(LogEntry.objects.order_by("-timestamp", "-id")[:50])
    html = response.content.decode()
    assert "1200.00 → 1500.00" in html
    assert "Submitted → Expired" in html  # choice labels, not stored values
    assert "API token “CRM sync”" in html


def test_the_page_filters_by_channel_actor_action_and_object(staff_client, manager, three_channels):
    deal, source, lapsed = three_channels
    api = _shown(staff_client.get(AUDIT, {"channel": "api"}))
    assert [(e.object_id, e.action, e.changes) for e in api] == [
        (deal.pk, LogEntry.Action.UPDATE, {"amount": ["1200.00", "1500.00"]})
    ]
    by_task = _shown(staff_client.get(AUDIT, {"actor": "task:"}))
    assert [(e.object_id, e.changes) for e in by_task] == [(lapsed.pk, {"status": ["submitted", "expired"]})]
    by_command = _shown(staff_client.get(AUDIT, {"channel": "command"}))
    assert [(e.object_repr, e.additional_data["actor"]) for e in by_command] == [
        ("Trade fair (Website)", "command:tidy_sources")
    ]
    deal_history = _shown(staff_client.get(AUDIT, {"object_type": "deals.deal", "object_id": deal.pk}))
    assert [e.action for e in deal_history] == [LogEntry.Action.UPDATE, LogEntry.Action.CREATE]
    updates = _shown(staff_client.get(AUDIT, {"action": LogEntry.Action.UPDATE}))
    # The manager's staff role (a group added when the fixture made the user) is an update too.
    assert {(e.content_type.model, e.object_id) for e in updates} == {
        ("deal", deal.pk),
        ("dealregistration", lapsed.pk),
        ("user", manager.pk),
    }
    by_request = _shown(staff_client.get(AUDIT, {"cid": api[0].cid}))
    assert by_request == api


def test_the_page_filters_by_date_range(staff_client, world_a):
    january = LogEntry.objects.log_create(
        world_a.deal,
        action=LogEntry.Action.UPDATE,
        changes={"name": ["a", "b"]},
        timestamp=datetime(2026, 1, 31, 23, 0, tzinfo=UTC),
    )
    february = LogEntry.objects.log_create(
        world_a.deal,
        action=LogEntry.Action.UPDATE,
        changes={"name": ["b", "c"]},
        timestamp=datetime(2026, 2, 1, 0, 30, tzinfo=UTC),
    )
    assert _shown(staff_client.get(AUDIT, {"since": "2026-01-01", "until": "2026-01-31"})) == [january]
    assert _shown(staff_client.get(AUDIT, {"since": "2026-02-01", "until": "2026-02-28"})) == [february]
    later = _shown(staff_client.get(AUDIT, {"since": "2026-02-02"}))
    assert january not in later and february not in later
    assert len(later) == LogEntry.objects.count() - 2


def test_bad_filters_are_a_400_with_the_errors_not_a_500(staff_client, world_a):
    response = staff_client.get(
        AUDIT, {"object_id": "abc", "since": "yesterday", "channel": "fax", "page": "x"}
    )
    assert response.status_code == 400
    errors = response.context["filter"].errors
    assert set(errors) == {"object_id", "since", "channel"}
    assert staff_client.get(AUDIT, {"object_id": str(2**70)}).status_code == 400


def test_the_page_paginates_with_a_query_budget_that_does_not_grow(
    staff_client, world_a, world_b, django_assert_max_num_queries
):
    for step in range(30):
        deal_update(deal=world_a.deal, amount=Decimal(1000 + step))
        deal_update(deal=world_a.deal, sourcing_partner=world_b.partner if step % 2 else world_a.partner)
    # Session, user, roles, the count, the page, then one query per model the changes point at.
    with django_assert_max_num_queries(10):
        first = staff_client.get(AUDIT)
    assert len(first.context["entries"]) == 50
    second = _shown(staff_client.get(AUDIT, {"page": 2}))
    total = LogEntry.objects.count()
    assert len(second) == total - 50
    assert "page=2" in first.content.decode()


def test_sales_ops_may_read_the_trail_but_partners_and_strangers_may_not(client, admin_a, salesops, outsider):
    assert client.get(AUDIT).status_code == 302  # to the login page
    client.force_login(admin_a)
    assert client.get(AUDIT).status_code == 403
    client.force_login(outsider)
    assert client.get(AUDIT).status_code == 403
    client.force_login(salesops)
    assert client.get(AUDIT).status_code == 200


# --- A partner's history of its own registrations ------------------------------------------------


@pytest.fixture
def conflicted_then_approved(world_a, world_b):
    """Bravo claims acme.com; Alpha's user alice registers it on the portal; the manager `mia`
    approves Alpha's claim over the conflict with a staff-only override reason."""
    rival = registration_submit(
        partner=world_b.partner, account_name="Acme", domain="acme.com", amount=Decimal("900.00")
    )
    alice = PartnerUserFactory(partner=world_a.partner, user__username="alice").user
    mia = StaffUserFactory(username="mia.reviewer", role=StaffRole.PARTNER_MANAGER)
    with acting(actor=Actor(label="alice", user=alice)):
        mine = registration_submit(
            partner=world_a.partner,
            account_name="Acme",
            domain="acme.com",
            amount=Decimal("12500.00"),
            notes="Via the CTO",
            submitted_by=alice,
        )
    with acting(actor=Actor(label="mia.reviewer", user=mia)):
        registration_approve(
            registration=mine, decided_by=mia, reason="Welcome aboard", override_reason="CEO call: keep Alpha"
        )
    return alice, mine, rival


def test_a_partner_reads_its_registrations_history_without_staff_internals(client, conflicted_then_approved):
    alice, mine, rival = conflicted_then_approved
    client.force_login(alice)
    response = client.get(reverse("portal:registration_detail", args=[mine.pk]))
    assert response.status_code == 200
    history = response.context["history"]
    assert [(view.action, view.actor) for view in history] == [
        ("created", "alice"),
        ("changed", "Partner program team"),
    ]
    approval = {change.field: (change.before, change.after) for change in history[1].changes}
    assert approval["status"] == ("Submitted", "Approved")
    assert approval["decision reason"] == ("—", "Welcome aboard")
    assert set(approval) == {"status", "decided at", "decision reason", "deal"}
    html = response.content.decode()
    assert "Via the CTO" in html and "12500.00" in html
    for internal in ("CEO call", "mia.reviewer", "onflict", "Bravo"):
        assert internal not in html


def test_a_partner_gets_404_for_another_partners_registration_and_its_history(
    client, conflicted_then_approved, admin_b
):
    alice, mine, rival = conflicted_then_approved
    client.force_login(admin_b)
    response = client.get(reverse("portal:registration_detail", args=[mine.pk]))
    assert response.status_code == 404
    assert "Welcome aboard" not in response.content.decode()
    client.force_login(alice)
    assert client.get(reverse("portal:registration_detail", args=[rival.pk])).status_code == 404


def test_an_expiry_reads_as_automatic_in_the_partners_history(client, world_a, admin_a):
    lapsed = DealRegistrationFactory(partner=world_a.partner, protection_expires_at=T0 + timedelta(days=1))
    expire_registrations.apply()
    client.force_login(admin_a)
    history = client.get(reverse("portal:registration_detail", args=[lapsed.pk])).context["history"]
    assert [(v.action, v.actor, [(c.field, c.before, c.after) for c in v.changes]) for v in history][-1] == (
        "changed",
        "Automatic (program rules)",
        [("status", "Submitted", "Expired")],
    )


# --- Append-only ----------------------------------------------------------------------------------


def test_log_entries_cannot_be_added_changed_or_deleted_in_the_admin(client, world_a):
    client.force_login(SuperUserFactory(username="root"))
    entry = LogEntry.objects.get_for_object(world_a.deal).get()
    before = (entry.changes, entry.object_repr, entry.additional_data)
    assert client.get(reverse("admin:auditlog_logentry_changelist")).status_code == 200
    assert client.get(reverse("admin:auditlog_logentry_add")).status_code == 403
    change = reverse("admin:auditlog_logentry_change", args=[entry.pk])
    assert client.get(change).status_code == 200  # read-only view
    assert client.post(change, {"object_repr": "forged", "changes": "{}"}).status_code == 403
    delete = reverse("admin:auditlog_logentry_delete", args=[entry.pk])
    assert client.get(delete).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403
    bulk = client.post(
        reverse("admin:auditlog_logentry_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk]},
    )
    assert bulk.status_code in (200, 302)
    entry.refresh_from_db()
    assert (entry.changes, entry.object_repr, entry.additional_data) == before


@pytest.mark.postgres
def test_postgresql_refuses_update_and_delete_of_log_entries(world_a):
    entry = LogEntry.objects.get_for_object(world_a.deal).get()
    table = LogEntry._meta.db_table
    for sql in (
        f"UPDATE {table} SET object_repr = 'forged' WHERE id = %s",
        f"DELETE FROM {table} WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [entry.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LogEntry.objects.filter(pk=entry.pk).update(changes={})
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LogEntry.objects.filter(pk=entry.pk).delete()
    entry.refresh_from_db()
    assert entry.object_repr == str(world_a.deal)


@pytest.mark.postgres
def test_postgresql_still_lets_a_user_be_deleted_and_the_entry_keeps_who_acted(world_a):
    mia = StaffUserFactory(username="mia")
    with acting(actor=Actor(label="mia", user=mia)):
        deal_update(deal=world_a.deal, name="Renamed")
    mia.delete()
    entry = _entries(world_a.deal, LogEntry.Action.UPDATE).get()
    assert entry.actor_id is None
    assert (entry.actor_email, entry.additional_data["actor"]) == ("mia@example.com", "mia")
    assert entry.changes["name"][1] == "Renamed"
    assert timezone.now() - entry.timestamp < timedelta(minutes=5)


def test_the_page_labels_every_filter_even_with_errors(staff_client, three_channels):
    for query in ({}, {"object_id": "abc", "since": "yesterday"}):
        html = staff_client.get(AUDIT, query).content.decode()
        assert unlabelled(html) == [], query
        assert 'aria-current="page">Audit trail</a>' in html
