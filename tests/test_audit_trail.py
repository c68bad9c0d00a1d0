"""The audit trail records who changed what, when and through what: API, admin, page, task,
command and import, with each field before and after, in the same transaction as the change."""

import io
import json
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from api.models import ApiToken
from api.services import api_token_create, api_token_revoke
from audit.models import ImportRecord
from deals.models import Deal, DealRegistration
from deals.services import deal_update
from deals.tasks import expire_registrations
from partners.roles import StaffRole
from partners.services import partner_user_create, staff_user_create
from prm import acting
from tests.factories import (
    T0,
    DealFactory,
    DealRegistrationFactory,
    JoinSourceFactory,
    PartnerFactory,
    PartnerUserFactory,
    SuperUserFactory,
)
from tests.support.api import *  # noqa: F403
from tests.support.api import API
from tests.test_api_import import DATA, _zip

pytestmark = pytest.mark.django_db
UPDATE, CREATE = LogEntry.Action.UPDATE, LogEntry.Action.CREATE


def _entries(obj, action=None):
    entries = LogEntry.objects.get_for_object(obj).order_by("id")
    return entries.filter(action=action) if action is not None else entries


def _bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_a_deal_patch_with_a_token_records_the_user_the_token_and_the_amounts(manager, world_a):
    token, secret = api_token_create(user=manager, name="CRM sync")
    url = f"{API}/deals/{world_a.deal.pk}/"
    response = _bearer(secret).patch(url, {"amount": "1500.00"}, format="json")
    assert response.status_code == 200, response.content
    entry = _entries(world_a.deal, UPDATE).get()
    assert entry.changes == {"amount": ["1200.00", "1500.00"]}
    assert (entry.actor, entry.actor_email) == (manager, "manager@example.com")
    assert entry.additional_data == {
        "channel": "api",
        "actor": "manager",
        "token": {"id": token.pk, "name": "CRM sync"},
    }
    assert entry.remote_addr == "127.0.0.1"


def test_a_session_api_request_records_the_user_without_a_token(as_manager, manager, world_a):
    response = as_manager.patch(f"{API}/deals/{world_a.deal.pk}/", {"name": "Renewal"}, format="json")
    assert response.status_code == 200, response.content
    entry = _entries(world_a.deal, UPDATE).get()
    assert entry.changes == {"name": [world_a.deal.name, "Renewal"]}
    assert entry.actor == manager
    assert entry.additional_data == {"channel": "api", "actor": "manager"}


def test_an_admin_change_records_channel_admin_and_the_field_before_and_after(client):
    source = JoinSourceFactory(name="Website", kind="website")
    client.force_login(SuperUserFactory(username="root"))
    url = reverse("admin:partners_joinsource_change", args=[source.pk])
    response = client.post(url, {"name": "Web form", "kind": "event", "key": ""})
    assert response.status_code == 302
    entry = _entries(source, UPDATE).get()
    assert entry.changes == {"name": ["Website", "Web form"], "kind": ["website", "event"]}
    assert entry.additional_data == {"channel": "admin", "actor": "root"}
    assert entry.actor.username == "root"


def test_the_expiry_task_records_each_expired_registration_as_made_by_the_task():
    lapsed = DealRegistrationFactory(protection_expires_at=T0 + timedelta(days=1))
    now = timezone.now()
    protected = DealRegistrationFactory(submitted_at=now, protection_expires_at=now + timedelta(days=90))
    result = expire_registrations.apply()
    assert result.get() == 1
    lapsed.refresh_from_db()
    assert lapsed.status == DealRegistration.Status.EXPIRED
    entry = _entries(lapsed, UPDATE).get()
    assert entry.changes == {"status": ["submitted", "expired"]}
    assert entry.additional_data == {"channel": "task", "actor": "task:deals.tasks.expire_registrations"}
    assert entry.actor is None
    assert entry.cid == result.id  # the task's id groups everything the task changed
    assert entry.object_repr.endswith("(Expired)")
    assert not _entries(protected, UPDATE).exists()
    assert expire_registrations.apply().get() == 0  # nothing left to expire, nothing more recorded
    assert _entries(lapsed, UPDATE).count() == 1


def test_the_import_command_records_one_entry_with_its_files_and_counts():
    before = LogEntry.objects.count()
    call_command("import_program", DATA / "program_valid", stdout=io.StringIO())
    assert Deal.objects.count() == 4  # the import wrote rows in bulk, which record no entries of their own
    assert LogEntry.objects.count() == before + 1
    record = ImportRecord.objects.get()
    entry = _entries(record).get()
    assert entry.action == CREATE
    assert entry.changes["source"] == ["", "program_valid"]
    assert entry.changes["deals.csv"] == ["", "4 rows: 4 created, 0 updated, 0 unchanged"]
    assert entry.changes["touches.csv"] == ["", "5 rows: 5 created, 0 updated, 0 unchanged"]
    assert set(entry.changes) == {"source", *record.files}
    assert record.files["partners.csv"] == {"rows": 6, "created": 6, "updated": 0, "unchanged": 0}
    assert entry.additional_data == {"channel": "import", "actor": "command:import_program"}


def test_a_refused_import_records_nothing():
    with pytest.raises(Exception, match="nothing was imported"):
        call_command("import_program", DATA / "program_bad", stderr=io.StringIO())
    assert not ImportRecord.objects.exists()
    assert not LogEntry.objects.exists()


def test_an_api_import_with_a_token_records_one_entry_for_the_token_user(salesops):
    token, secret = api_token_create(user=salesops, name="nightly sync")
    before = LogEntry.objects.count()
    response = _bearer(secret).post(
        f"{API}/imports/", {"file": _zip(DATA / "program_valid")}, format="multipart"
    )
    assert response.status_code == 200, response.content
    assert LogEntry.objects.count() == before + 1
    entry = LogEntry.objects.latest("id")
    assert entry.object_repr == "Import of program.zip"
    assert entry.changes["costs.csv"] == ["", "3 rows: 3 created, 0 updated, 0 unchanged"]
    assert entry.actor == salesops
    assert entry.additional_data == {
        "channel": "import",
        "actor": "salesops",
        "token": {"id": token.pk, "name": "nightly sync"},
    }


def test_a_registration_submitted_on_the_portal_records_channel_page(client):
    member = PartnerUserFactory(partner=PartnerFactory(name="Alpha"), user__username="alice")
    client.force_login(member.user)
    form = {"account_name": "Acme", "domain": "acme.com", "amount": "12500.00", "action": "submit"}
    assert client.post(reverse("portal:register"), form).status_code == 302
    registration = DealRegistration.objects.get()
    entry = _entries(registration).get()
    assert entry.action == CREATE
    assert (entry.changes["amount"], entry.changes["status"]) == (["None", "12500.00"], ["None", "submitted"])
    assert entry.additional_data == {"channel": "page", "actor": "alice"}
    assert entry.actor == member.user
    account_entry = _entries(registration.account).get()
    assert account_entry.cid == entry.cid  # one request, one correlation id


def test_a_rolled_back_change_leaves_no_entry():
    deal = DealFactory(amount=Decimal("1000.00"))
    with pytest.raises(RuntimeError), transaction.atomic():
        deal_update(deal=deal, amount=Decimal("1500.00"))
        assert _entries(deal, UPDATE).count() == 1  # written in the change's own transaction...
        raise RuntimeError("the caller fails after the change")
    assert not _entries(deal, UPDATE).exists()  # ...so it rolled back with it
    deal.refresh_from_db()
    assert deal.amount == Decimal("1000.00")


def test_passwords_and_token_hashes_never_reach_the_trail(world_a):
    membership = partner_user_create(
        partner=world_a.partner,
        username="pat",
        email="pat@example.com",
        password="S3cret-Passw0rd!",
        role="member",
    )
    user = membership.user
    first_hash = user.password
    user.set_password("An0ther-Passw0rd!")
    user.save()
    token, secret = api_token_create(user=user, name="laptop")
    api_token_revoke(token=token)
    trail = json.dumps([e.changes for e in LogEntry.objects.all()])
    for secret_value in (first_hash, user.password, secret, ApiToken.objects.get().secret_hash):
        assert secret_value not in trail
    created, changed = _entries(user)
    assert created.changes["password"] == ["", "(secret)"]
    assert changed.changes == {"password": ["(secret)", "(secret)"]}
    revoked = _entries(token, UPDATE).get()
    assert list(revoked.changes) == ["revoked_at"] and revoked.changes["revoked_at"][0] == "None"


def test_logging_in_records_nothing_but_a_staff_role_change_is_recorded(client):
    user = staff_user_create(
        username="mia", email="mia@example.com", password="S3cret-Passw0rd!", role="Sales ops"
    )
    role = _entries(user, UPDATE).get()
    assert role.changes == {
        "groups": {"type": "m2m", "operation": "add", "objects": [StaffRole.SALES_OPS.value]}
    }
    response = client.post("/login/", {"username": "mia", "password": "S3cret-Passw0rd!"})
    assert response.status_code == 302 and "_auth_user_id" in client.session
    assert _entries(user, UPDATE).count() == 1  # last_login moved; that is not a change to the user


def test_a_change_outside_any_request_or_task_names_the_management_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["manage.py", "shell"])
    acting._outside_any_context.cache_clear()
    try:
        source = JoinSourceFactory(name="Shell-made")
    finally:
        acting._outside_any_context.cache_clear()
    assert _entries(source).get().additional_data == {"channel": "command", "actor": "command:shell"}


def test_a_nested_context_overrides_the_channel_and_keeps_the_actor():
    with acting.acting(actor=acting.Actor.command("import_program")) as outer:
        with acting.acting(channel=acting.Channel.IMPORT) as inner:
            assert inner.resolved_actor().label == "command:import_program"
            assert inner.resolved_channel() == acting.Channel.IMPORT
            assert inner.correlation_id == outer.correlation_id
        assert acting.current().resolved_channel() == acting.Channel.SYSTEM
    assert acting.current().resolved_actor() == acting.SYSTEM
