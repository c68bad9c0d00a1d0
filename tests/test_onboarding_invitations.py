"""Invitation links: signed, single use, expiring; accepting creates the login with the role."""

import time
from datetime import timedelta

import pytest
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from notifications.models import OutboundEmail
from partners.invitations import SIGNING_SALT, invitation_create, invitation_revoke
from partners.models import Invitation, PartnerUser
from tests.factories import PartnerFactory, PartnerUserFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "violet-harbour-lantern-42"


@pytest.fixture
def partner():
    return PartnerFactory(name="Northwind")


@pytest.fixture
def issued(partner):
    return invitation_create(
        partner=partner,
        email="ben@northwind.example",
        role="member",
        invited_by=StaffUserFactory(username="maria"),
    )


def accept(
    client, path: str, username: str = "ben", password: str = NEW_PASSWORD, confirmation: str | None = None
):
    return client.post(
        path,
        {"username": username, "password": password, "password_confirmation": confirmation or password},
    )


def test_accepting_creates_the_login_with_the_role_and_logs_it_in(client, issued, partner):
    page = client.get(issued.path)
    assert page.status_code == 200
    assert "maria invited <strong>ben@northwind.example</strong> as <strong>partner member</strong>" in (
        page.content.decode()
    )
    response = accept(client, issued.path)
    assert response.status_code == 302 and response["Location"] == "/portal/"
    membership = PartnerUser.objects.select_related("user").get(user__username="ben")
    assert (membership.partner, membership.role, membership.user.email) == (
        partner,
        "member",
        "ben@northwind.example",
    )
    assert membership.user.check_password(NEW_PASSWORD) and not membership.user.is_staff
    invitation = Invitation.objects.get()
    assert invitation.accepted_user == membership.user and invitation.accepted_at is not None
    # Logged in as the new user: the portal opens.
    home = client.get("/portal/")
    assert home.status_code == 200 and home.context["user"] == membership.user


def test_a_used_link_is_refused(client, issued):
    accept(client, issued.path)
    client.logout()
    again = client.get(issued.path)
    assert again.status_code == 410
    assert "already been used" in again.content.decode()
    assert accept(client, issued.path, username="ben2").status_code == 410
    assert PartnerUser.objects.count() == 1


def test_an_expired_invitation_is_refused(client, issued):
    Invitation.objects.filter(pk=issued.invitation.pk).update(
        created_at=timezone.now() - timedelta(days=8), expires_at=timezone.now() - timedelta(days=1)
    )
    response = client.get(issued.path)
    assert response.status_code == 410 and "This invitation has expired" in response.content.decode()
    assert accept(client, issued.path).status_code == 410
    assert not PartnerUser.objects.exists()


def test_a_link_signed_longer_ago_than_invitation_days_is_refused_even_if_the_row_is_open(
    client, issued, settings
):
    # The same id and secret, signed eight days ago: the signature's own age refuses it.
    data = signing.TimestampSigner(salt=SIGNING_SALT).unsign_object(issued.token)

    class EightDaysAgo(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time()) - 8 * 86400)

    old_token = EightDaysAgo(salt=SIGNING_SALT).sign_object(data)
    assert client.get(f"/invitations/{old_token}/").status_code == 410
    settings.INVITATION_DAYS = 9
    assert client.get(f"/invitations/{old_token}/").status_code == 200


def test_tampered_links_are_refused(client, issued):
    token = issued.token
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    forged_payload = signing.TimestampSigner(salt="another-salt").sign_object(
        signing.TimestampSigner(salt=SIGNING_SALT).unsign_object(token)
    )
    wrong_secret = signing.TimestampSigner(salt=SIGNING_SALT).sign_object(
        {"i": issued.invitation.pk, "t": "guess"}
    )
    other_id = signing.TimestampSigner(salt=SIGNING_SALT).sign_object({"i": 999999, "t": "guess"})
    not_a_dict = signing.TimestampSigner(salt=SIGNING_SALT).sign_object(["i", 1])
    for bad in (flipped, forged_payload, wrong_secret, other_id, not_a_dict, "abc", "a:b:c", "%E2%80%AE"):
        response = client.get(f"/invitations/{bad}/")
        assert response.status_code == 404, bad
        assert "not valid" in response.content.decode()
        assert accept(client, f"/invitations/{bad}/").status_code == 404
    assert client.get("/invitations/%00/").status_code == 400  # a NUL is refused before any view
    assert not PartnerUser.objects.exists()
    # The stored row holds only the secret's hash, never the token.
    assert issued.invitation.token_hash not in token and len(issued.invitation.token_hash) == 64


def test_a_withdrawn_invitation_is_refused(client, issued):
    invitation_revoke(invitation=issued.invitation, revoked_by=StaffUserFactory())
    response = client.get(issued.path)
    assert response.status_code == 410 and "withdrawn" in response.content.decode()


def test_a_new_invitation_to_the_same_address_replaces_the_pending_one(client, issued, partner):
    newer = invitation_create(
        partner=partner, email="BEN@northwind.example", role="admin", invited_by=StaffUserFactory()
    )
    assert client.get(issued.path).status_code == 410
    assert client.get(newer.path).status_code == 200
    assert [i.state() for i in Invitation.objects.order_by("pk")] == ["revoked", "pending"]


def test_password_validators_and_a_taken_username_are_refused_with_messages(client, issued):
    PartnerUserFactory(user__username="taken")
    weak = accept(client, issued.path, password="12345678")
    assert weak.status_code == 400
    messages = weak.context["form"].errors["password"]
    assert "This password is too common." in messages and "This password is entirely numeric." in messages
    mismatch = accept(client, issued.path, confirmation="something-else-entirely")
    assert mismatch.context["form"].errors["password_confirmation"] == ["The two passwords differ."]
    taken = accept(client, issued.path, username="TAKEN")
    assert taken.context["form"].errors["username"] == ["the username 'TAKEN' is taken"]
    assert PartnerUser.objects.count() == 1 and Invitation.objects.get().state() == "pending"


def test_the_invitation_mail_names_inviter_partner_role_and_expiry(issued):
    mail = OutboundEmail.objects.get(kind="invitation")
    expires = f"{issued.invitation.expires_at:%-d %b %Y, %H:%M}"  # the one page and mail format
    assert mail.subject == "maria invites you to the Northwind partner portal"
    assert "maria invited you to act for Northwind in the partner portal as partner member" in mail.text
    assert f"the link works once, until {expires} UTC" in mail.text
    assert f"http://127.0.0.1:8000{issued.path}" in mail.text


def test_only_managers_and_the_partners_own_admins_may_invite(partner):
    own_admin = PartnerUserFactory(partner=partner, role="admin").user
    member = PartnerUserFactory(partner=partner, role="member").user
    other_admin = PartnerUserFactory(role="admin").user
    invitation_create(partner=partner, email="a@example.com", role="member", invited_by=own_admin)
    for outsider in (member, other_admin):
        with pytest.raises(PermissionDenied):
            invitation_create(partner=partner, email="b@example.com", role="member", invited_by=outsider)
    assert list(Invitation.objects.values_list("email", flat=True)) == ["a@example.com"]


def test_a_partner_that_left_or_never_joined_takes_no_invitations():
    from django.core.exceptions import ValidationError

    manager = StaffUserFactory()
    for partner in (PartnerFactory(applied=True), PartnerFactory(status="churned")):
        with pytest.raises(ValidationError, match="takes no new logins"):
            invitation_create(partner=partner, email="x@example.com", role="admin", invited_by=manager)
