"""Roles that differ for real: admins manage their own partner's users, members and outsiders do not."""

import pytest
from django.contrib.auth import get_user_model

from partners.models import Invitation, PartnerUser
from partners.roles import StaffRole
from tests.factories import DEFAULT_PASSWORD, PartnerFactory, PartnerUserFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def northwind():
    return PartnerFactory(name="Northwind")


@pytest.fixture
def admin(northwind):
    return PartnerUserFactory(partner=northwind, role="admin", user__username="ada")


@pytest.fixture
def member(northwind):
    return PartnerUserFactory(partner=northwind, role="member", user__username="mo")


@pytest.fixture
def stranger():
    """A member of another partner."""
    return PartnerUserFactory(partner=PartnerFactory(name="Contoso"), role="member", user__username="carl")


def login(client, membership: PartnerUser):
    client.force_login(membership.user)
    return client


def test_an_admin_sees_its_partners_logins_and_invites_a_member(client, admin, member, stranger):
    page = login(client, admin).get("/portal/users/")
    assert page.status_code == 200
    assert [p.user.username for p in page.context["people"]] == ["ada", "mo"]
    response = client.post("/portal/users/", {"email": "newbie@northwind.example", "role": "member"})
    assert response.status_code == 302
    invitation = Invitation.objects.get()
    assert (invitation.partner, invitation.role, invitation.invited_by) == (
        admin.partner,
        "member",
        admin.user,
    )
    assert "newbie@northwind.example" in client.get("/portal/users/").content.decode()


def test_an_admin_cannot_invite_into_another_partner(client, admin, stranger):
    # The form has no partner field: whatever is posted, the invitation is for the admin's own partner.
    login(client, admin).post(
        "/portal/users/", {"email": "x@example.com", "role": "admin", "partner": stranger.partner_id}
    )
    assert Invitation.objects.get().partner == admin.partner
    assert not Invitation.objects.filter(partner=stranger.partner).exists()


def test_a_member_gets_403_on_user_management(client, admin, member):
    pending = Invitation.objects.create(
        partner=admin.partner,
        email="p@example.com",
        role="member",
        expires_at="2099-01-01T00:00Z",
        created_at="2026-01-01T00:00Z",
        token_hash="0" * 64,
    )
    login(client, member)
    assert client.get("/portal/users/").status_code == 403
    assert client.post("/portal/users/", {"email": "x@example.com", "role": "admin"}).status_code == 403
    assert client.post(f"/portal/users/{admin.pk}/access/", {"active": "0"}).status_code == 403
    assert client.post(f"/portal/invitations/{pending.pk}/revoke/").status_code == 403
    assert client.post("/portal/profile/", {"phone": "1"}).status_code == 403
    admin.user.refresh_from_db()
    pending.refresh_from_db()
    assert admin.user.is_active and pending.revoked_at is None and Invitation.objects.count() == 1
    # The member still does its own work: its portal, deals and the (read-only) profile.
    assert client.get("/portal/").status_code == 200
    assert client.get("/portal/profile/").status_code == 200
    assert "/portal/users/" not in client.get("/portal/").content.decode()


def test_an_admin_cannot_manage_another_partners_users_or_invitations(client, admin, stranger):
    theirs = Invitation.objects.create(
        partner=stranger.partner,
        email="p@contoso.example",
        role="member",
        expires_at="2099-01-01T00:00Z",
        created_at="2026-01-01T00:00Z",
        token_hash="0" * 64,
    )
    login(client, admin)
    assert client.post(f"/portal/users/{stranger.pk}/access/", {"active": "0"}).status_code == 404
    assert client.post(f"/portal/invitations/{theirs.pk}/revoke/").status_code == 404
    stranger.user.refresh_from_db()
    theirs.refresh_from_db()
    assert stranger.user.is_active and theirs.revoked_at is None
    assert "carl" not in client.get("/portal/users/").content.decode()


def test_deactivation_blocks_login_and_ends_sessions_until_reactivated(client, admin, member):
    from django.test import Client

    member_session = Client()
    member_session.force_login(member.user)
    assert member_session.get("/portal/").status_code == 200

    response = login(client, admin).post(f"/portal/users/{member.pk}/access/", {"active": "0"}, follow=True)
    assert "mo deactivated: it can no longer log in" in response.content.decode()
    member.refresh_from_db()
    assert not member.user.is_active
    assert (member.access_changed_by, member.access_changed_at is not None) == (admin.user, True)
    # The open session ends, and the password no longer logs in.
    assert member_session.get("/portal/")["Location"].startswith("/login/")
    refused = Client().post("/login/", {"username": "mo", "password": DEFAULT_PASSWORD})
    assert refused.status_code == 200 and not refused.wsgi_request.user.is_authenticated

    client.post(f"/portal/users/{member.pk}/access/", {"active": "1"})
    fresh = Client()
    assert fresh.post("/login/", {"username": "mo", "password": DEFAULT_PASSWORD}).status_code == 302
    assert fresh.get("/portal/").status_code == 200


def test_an_admin_cannot_deactivate_itself(client, admin):
    response = login(client, admin).post(f"/portal/users/{admin.pk}/access/", {"active": "0"}, follow=True)
    assert "You cannot deactivate or re-activate your own login." in response.content.decode()
    admin.user.refresh_from_db()
    assert admin.user.is_active


def test_a_deactivated_users_api_token_stops_working(client, admin, member):
    from api.services import api_token_create

    token, secret = api_token_create(user=member.user, name="CRM sync")
    headers = {"HTTP_AUTHORIZATION": f"Token {secret}"}
    assert client.get("/api/v1/registrations/", **headers).status_code == 200
    login(client, admin).post(f"/portal/users/{member.pk}/access/", {"active": "0"})
    client.logout()
    assert client.get("/api/v1/registrations/", **headers).status_code == 401


def test_a_manager_invites_a_partner_admin_from_the_partner_page(client, northwind):
    client.force_login(StaffUserFactory(username="maria"))
    response = client.post(f"/dashboard/partners/{northwind.pk}/invite/", {"email": "boss@northwind.example"})
    assert response.status_code == 302 and response["Location"] == f"/dashboard/partners/{northwind.pk}/"
    invitation = Invitation.objects.get()
    assert (invitation.partner, invitation.role, invitation.invited_by.username) == (
        northwind,
        "admin",
        "maria",
    )
    page = client.get(f"/dashboard/partners/{northwind.pk}/").content.decode()
    assert "boss@northwind.example was invited as a partner admin of Northwind." in page
    bad = client.post(f"/dashboard/partners/{northwind.pk}/invite/", {"email": "nope"}, follow=True)
    assert "Invitation not sent (email): Enter a valid email address." in bad.content.decode()
    assert Invitation.objects.count() == 1


def test_sales_ops_and_partner_users_cannot_invite_from_the_dashboards(client, northwind, admin):
    client.force_login(StaffUserFactory(role=StaffRole.SALES_OPS))
    assert (
        client.post(f"/dashboard/partners/{northwind.pk}/invite/", {"email": "a@example.com"}).status_code
        == 403
    )
    client.force_login(admin.user)
    assert (
        client.post(f"/dashboard/partners/{northwind.pk}/invite/", {"email": "a@example.com"}).status_code
        == 403
    )
    assert not Invitation.objects.exists()


def test_the_portal_menu_offers_user_management_to_admins_only(client, admin, member):
    assert 'href="/portal/users/"' in login(client, admin).get("/portal/").content.decode()
    assert 'href="/portal/users/"' not in login(client, member).get("/portal/").content.decode()
