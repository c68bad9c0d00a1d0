"""Partner applications, the lifecycle rules and the logins that act for partners."""

from datetime import date

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from partners.models import Partner, PartnerUser
from partners.roles import StaffRole, is_partner_manager, is_sales_ops
from partners.rules import partner_transition_errors
from partners.selectors import joined_partners, partners_referred_by, pending_applications
from partners.services import (
    partner_apply,
    partner_approve,
    partner_reject,
    partner_set_status,
    partner_user_create,
    staff_user_create,
)
from program.models import ProgramSettings, program_today
from tests.factories import JoinSourceFactory, PartnerFactory

pytestmark = pytest.mark.django_db


def _errors(exc_info) -> dict[str, list[str]]:
    return exc_info.value.message_dict


@pytest.fixture
def application() -> Partner:
    return partner_apply(
        name="Northwind Resellers",
        type=Partner.Type.RESELLER,
        join_source=JoinSourceFactory(),
        applied_at=date(2026, 2, 1),
    )


def test_an_application_is_recorded_without_a_joined_date(application):
    stored = Partner.objects.get(pk=application.pk)
    assert (stored.name, stored.status, stored.joined_at) == ("Northwind Resellers", "applied", None)
    assert stored.applied_at == date(2026, 2, 1)


def test_an_application_needs_a_name_a_valid_type_and_a_join_source():
    with pytest.raises(ValidationError) as exc_info:
        partner_apply(name="  ", type="spaceship", join_source=None, applied_at=None)
    errors = _errors(exc_info)
    assert errors["name"] == ["is required"]
    assert errors["join_source"] == ["unknown join source"]
    assert errors["applied_at"] == ["is required"]
    assert "type" in errors
    assert Partner.objects.count() == 0


def test_a_referral_must_come_from_an_approved_partner():
    applicant = PartnerFactory(applied=True, name="Still Applying")
    with pytest.raises(ValidationError) as exc_info:
        partner_apply(
            name="Referred Co",
            type=Partner.Type.REFERRAL,
            join_source=JoinSourceFactory(kind="referral"),
            applied_at=date(2026, 2, 1),
            referred_by=applicant,
        )
    assert _errors(exc_info)["referred_by"] == [
        "Still Applying is not an approved partner, so it cannot refer others"
    ]


def test_a_referral_by_a_joined_partner_is_kept():
    referrer = PartnerFactory()
    partner = partner_apply(
        name="Referred Co",
        type=Partner.Type.REFERRAL,
        join_source=JoinSourceFactory(kind="referral"),
        applied_at=date(2026, 2, 1),
        referred_by=referrer,
        key="P-77",
    )
    assert list(referrer.referrals.all()) == [partner]
    assert partner.key == "P-77"


def test_an_application_key_must_be_unused():
    PartnerFactory(key="P-1")
    with pytest.raises(ValidationError) as exc_info:
        partner_apply(
            name="X", type="reseller", join_source=JoinSourceFactory(), applied_at=date(2026, 1, 1), key="P-1"
        )
    assert _errors(exc_info)["key"] == ["a partner with key 'P-1' already exists"]


def test_approval_makes_the_partner_active_from_the_given_date(application):
    partner = partner_approve(partner=application, joined_at=date(2026, 2, 10))
    stored = Partner.objects.get(pk=partner.pk)
    assert (stored.status, stored.joined_at) == ("active", date(2026, 2, 10))


def test_approval_defaults_to_today_in_the_program_time_zone(application):
    settings_row = ProgramSettings.load()
    settings_row.time_zone = "Pacific/Kiritimati"
    settings_row.save()
    partner = partner_approve(partner=application)
    assert partner.joined_at == program_today()


def test_approval_refuses_a_joined_date_before_the_application(application):
    with pytest.raises(ValidationError) as exc_info:
        partner_approve(partner=application, joined_at=date(2026, 1, 31))
    assert _errors(exc_info)["joined_at"] == ["joined_at (2026-01-31) is before applied_at (2026-02-01)"]
    assert Partner.objects.get(pk=application.pk).status == "applied"


def test_only_applications_can_be_approved_or_rejected():
    partner = PartnerFactory(name="Already In")
    with pytest.raises(ValidationError) as exc_info:
        partner_approve(partner=partner, joined_at=date(2026, 3, 1))
    assert _errors(exc_info)["status"] == ["only an application can be approved; Already In is active"]
    with pytest.raises(ValidationError) as exc_info:
        partner_reject(partner=partner)
    assert _errors(exc_info)["status"] == ["only an application can be rejected; Already In is active"]


def test_a_rejected_application_never_gets_a_joined_date(application):
    partner_reject(partner=application)
    stored = Partner.objects.get(pk=application.pk)
    assert (stored.status, stored.joined_at) == ("rejected", None)
    with pytest.raises(ValidationError):
        partner_approve(partner=stored, joined_at=date(2026, 3, 1))


def test_joined_partners_move_between_active_inactive_and_churned():
    partner = PartnerFactory()
    assert partner_set_status(partner=partner, status="inactive").status == "inactive"
    assert partner_set_status(partner=partner, status="active").status == "active"
    assert partner_set_status(partner=partner, status="churned").status == "churned"
    # A win-back keeps the original approval date.
    won_back = partner_set_status(partner=partner, status="active")
    assert (won_back.status, won_back.joined_at) == ("active", date(2026, 1, 10))


def test_set_status_refuses_lifecycle_jumps(application):
    with pytest.raises(ValidationError) as exc_info:
        partner_set_status(partner=application, status="active")
    assert _errors(exc_info)["status"] == [
        "Northwind Resellers is applied: use approve/reject for applications"
    ]
    with pytest.raises(ValidationError) as exc_info:
        partner_set_status(partner=PartnerFactory(), status="rejected")
    assert "use approve/reject" in _errors(exc_info)["status"][0]
    assert Partner.objects.get(pk=application.pk).status == "applied"


def test_the_lifecycle_table_refuses_leaving_a_final_status():
    assert partner_transition_errors(old_status="rejected", new_status="active") == {
        "status": [
            "cannot change status from rejected to active; allowed from rejected: nothing (final status)"
        ]
    }
    assert partner_transition_errors(old_status="churned", new_status="inactive") == {
        "status": ["cannot change status from churned to inactive; allowed from churned: active"]
    }


def test_a_partner_user_logs_in_for_its_partner(client):
    partner = PartnerFactory()
    membership = partner_user_create(
        partner=partner,
        username="ana",
        email="ana@northwind.example",
        password="a-long-passphrase-42",
        role="admin",
    )
    assert (membership.partner, membership.role, membership.user.is_staff) == (partner, "admin", False)
    # The login lockout (django-axes) needs the request a login comes with.
    assert client.login(request=HttpRequest(), username="ana", password="a-long-passphrase-42")


def test_a_partner_user_needs_a_free_username_a_strong_password_and_a_known_role():
    partner = PartnerFactory()
    get_user_model().objects.create_user(username="taken")
    with pytest.raises(ValidationError) as exc_info:
        partner_user_create(
            partner=partner, username="TAKEN", email="not-an-email", password="123", role="boss"
        )
    errors = _errors(exc_info)
    assert errors["username"] == ["the username 'TAKEN' is taken"]
    assert errors["role"] == ["must be one of admin, member"]
    assert "email" in errors
    assert any("too short" in message for message in errors["password"])
    assert PartnerUser.objects.count() == 0


def test_a_staff_user_gets_its_role_group():
    manager = staff_user_create(
        username="mia",
        email="mia@vendor.example",
        password="a-long-passphrase-42",
        role=StaffRole.PARTNER_MANAGER,
    )
    ops = staff_user_create(
        username="sam", email="sam@vendor.example", password="a-long-passphrase-42", role=StaffRole.SALES_OPS
    )
    assert manager.is_staff and is_partner_manager(manager) and not is_sales_ops(manager)
    assert ops.is_staff and is_sales_ops(ops) and not is_partner_manager(ops)


def test_a_staff_user_needs_a_known_role():
    with pytest.raises(ValidationError) as exc_info:
        staff_user_create(
            username="x", email="x@vendor.example", password="a-long-passphrase-42", role="Janitors"
        )
    assert _errors(exc_info)["role"] == ["must be one of Partner managers, Sales ops"]


def test_the_application_queue_lists_undecided_applications_oldest_first():
    later = PartnerFactory(applied=True, applied_at=date(2026, 3, 2))
    earlier = PartnerFactory(applied=True, applied_at=date(2026, 3, 1))
    PartnerFactory(status="rejected", joined_at=None)
    PartnerFactory()
    assert list(pending_applications()) == [earlier, later]


def test_joined_partners_include_inactive_and_churned_ones_up_to_a_date():
    active = PartnerFactory(joined_at=date(2026, 1, 10))
    churned = PartnerFactory(status="churned", joined_at=date(2026, 1, 20))
    late = PartnerFactory(joined_at=date(2026, 2, 5))
    PartnerFactory(applied=True)
    assert set(joined_partners()) == {active, churned, late}
    assert set(joined_partners(as_of=date(2026, 1, 31))) == {active, churned}


def test_referrals_made_by_a_partner_are_listed():
    referrer = PartnerFactory()
    referred = PartnerFactory(applied=True, referred_by=referrer)
    PartnerFactory(applied=True)
    assert list(partners_referred_by(referrer)) == [referred]
