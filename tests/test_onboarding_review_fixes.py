"""Findings of the security review of onboarding, each a test that failed before its fix."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from partners.invitations import invitation_create, partner_user_set_active
from partners.models import PartnerUser
from tests.factories import PartnerFactory, PartnerUserFactory, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "violet-harbour-lantern-42"


def _admin(partner, name: str) -> PartnerUser:
    return PartnerUserFactory(partner=partner, user=UserFactory(username=name), role="admin")


def test_a_deactivated_admins_pending_invitations_stop_working(client):
    partner = PartnerFactory(name="Northwind")
    boss, rogue = _admin(partner, "boss"), _admin(partner, "rogue")
    issued = invitation_create(
        partner=partner, email="rogue@example.org", role="admin", invited_by=rogue.user
    )
    partner_user_set_active(membership=rogue, active=False, changed_by=boss.user)

    response = client.post(
        issued.path, {"username": "rogue2", "password": PASSWORD, "password_confirmation": PASSWORD}
    )
    assert response.status_code == 410
    assert b"This invitation was withdrawn" in response.content
    assert not PartnerUser.objects.filter(user__username="rogue2").exists()
    assert issued.invitation.__class__.objects.get(pk=issued.invitation.pk).revoked_by == boss.user


def test_a_partner_admin_cannot_undo_a_deactivation_by_the_program_team(client):
    partner = PartnerFactory()
    admin = _admin(partner, "adm")
    member = PartnerUserFactory(partner=partner, user=UserFactory(username="member"), role="member")
    partner_user_set_active(membership=member, active=False, changed_by=StaffUserFactory())
    with pytest.raises(ValidationError) as exc_info:
        partner_user_set_active(membership=member, active=True, changed_by=admin.user)
    assert "ask your partner manager" in exc_info.value.message_dict["user"][0]
    member.user.refresh_from_db()
    assert not member.user.is_active


def test_two_admins_cannot_deactivate_each_other_at_once():
    partner = PartnerFactory()
    a, b = _admin(partner, "a"), _admin(partner, "b")
    stale_a_user = a.user  # a's request authenticated before b's change committed
    partner_user_set_active(membership=a, active=False, changed_by=b.user)
    with pytest.raises(PermissionDenied):
        partner_user_set_active(membership=b, active=False, changed_by=stale_a_user)
    b.user.refresh_from_db()
    assert b.user.is_active
