"""Invitations to a partner's portal, and the partner's users: who may invite, accept, (de)activate.

A link is `/invitations/<token>/`, where the token is a TimestampSigner signature of the
invitation's id and a random secret; only the secret's SHA-256 is stored. It is refused when the
signature does not verify (tampered), is older than INVITATION_DAYS, names no invitation or the
wrong secret, or the invitation was accepted (single use), revoked or has expired.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from partners import events
from partners.access import can_manage_partner_users, can_write_all
from partners.models import Invitation, Partner, PartnerUser
from partners.services import partner_user_create

SIGNING_SALT = "partners.invitation"


class InvitationRefused(Exception):
    """An invitation link that cannot be used; `reason` is one of the REFUSALS keys."""

    REFUSALS = {
        "invalid": "This invitation link is not valid. Check that you copied the whole link from the email.",
        "expired": "This invitation has expired. Ask whoever invited you to send a new one.",
        "used": "This invitation has already been used. Log in with the login you created then.",
        "revoked": "This invitation was withdrawn. Ask whoever invited you to send a new one.",
        "closed": "This partner no longer takes new logins. Contact the partner program team.",
    }

    def __init__(self, reason: str) -> None:
        super().__init__(self.REFUSALS[reason])
        self.reason = reason
        self.message = self.REFUSALS[reason]


@dataclass(frozen=True)
class IssuedInvitation:
    """A new invitation and its link (the link exists only here and in the email)."""

    invitation: Invitation
    token: str

    @property
    def path(self) -> str:
        return reverse("invitation_accept", args=[self.token])


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=SIGNING_SALT)


def _refuse_unless_allowed(actor: User, partner: Partner) -> None:
    if actor is None or not can_manage_partner_users(actor, partner):
        raise PermissionDenied("Only partner managers and the partner's own admins manage its users.")


def invitation_create(*, partner: Partner, email: str, role: str, invited_by: User) -> IssuedInvitation:
    """Invite `email` to act for `partner` in `role`; emails the link after commit.

    Earlier pending invitations of the same address to the same partner are revoked, so only the
    newest link works.
    """
    _refuse_unless_allowed(invited_by, partner)
    email = (email or "").strip()
    errors: dict[str, list[str]] = {}
    try:
        validate_email(email)
    except ValidationError:
        errors["email"] = ["Enter a valid email address."]
    if role not in PartnerUser.Role.values:
        errors["role"] = [f"must be one of {', '.join(PartnerUser.Role.values)}"]
    if not partner.has_joined or partner.status == Partner.Status.CHURNED:
        errors["partner"] = [f"{partner} is {partner.get_status_display().lower()}: it takes no new logins"]
    if email and PartnerUser.objects.filter(partner=partner, user__email__iexact=email).exists():
        errors["email"] = [f"{email} already has a login at {partner}"]
    if errors:
        raise ValidationError(errors)
    now = timezone.now()
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        # One by one (not update()): each revocation is a change the audit trail records.
        for earlier in Invitation.objects.pending(now).filter(partner=partner, email__iexact=email):
            earlier.revoked_at, earlier.revoked_by = now, invited_by
            earlier.save(update_fields=["revoked_at", "revoked_by"])
        invitation = Invitation.objects.create(
            partner=partner,
            email=email,
            role=role,
            invited_by=invited_by,
            created_at=now,
            expires_at=now + timedelta(days=settings.INVITATION_DAYS),
            token_hash=_hash(secret),
        )
        issued = IssuedInvitation(invitation, _signer().sign_object({"i": invitation.pk, "t": secret}))
        events.invitation_issued.send(
            sender=Invitation, invitation=invitation, path=issued.path, invited_by=invited_by
        )
    return issued


def invitation_from_token(token: str) -> Invitation:
    """The invitation a link names, if it can still be accepted; else InvitationRefused."""
    try:
        data = _signer().unsign_object(token or "", max_age=timedelta(days=settings.INVITATION_DAYS))
    except signing.SignatureExpired:
        raise InvitationRefused("expired") from None
    except (signing.BadSignature, ValueError, UnicodeError):
        raise InvitationRefused("invalid") from None
    if not isinstance(data, dict) or not isinstance(data.get("i"), int) or not isinstance(data.get("t"), str):
        raise InvitationRefused("invalid")
    invitation = Invitation.objects.select_related("partner", "invited_by").filter(pk=data["i"]).first()
    if invitation is None or not constant_time_compare(_hash(data["t"]), invitation.token_hash):
        raise InvitationRefused("invalid")
    _refuse_unless_open(invitation)
    return invitation


def _refuse_unless_open(invitation: Invitation) -> None:
    state = invitation.state()
    if state == "accepted":
        raise InvitationRefused("used")
    if state != "pending":
        raise InvitationRefused(state)
    if not invitation.partner.has_joined or invitation.partner.status == Partner.Status.CHURNED:
        raise InvitationRefused("closed")
    inviter = invitation.invited_by
    if inviter is not None and not (
        inviter.is_active and can_manage_partner_users(inviter, invitation.partner)
    ):
        # Whoever invited has lost the right to (a deactivated admin): the link no longer works.
        raise InvitationRefused("withdrawn")


def invitation_accept(*, invitation: Invitation, username: str, password: str) -> PartnerUser:
    """Create the invitee's login (Django's password validators apply) with the invitation's role.

    The invitation row is locked and checked again, so a link used twice at once makes one login.
    """
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        _refuse_unless_open(invitation)
        membership = partner_user_create(
            partner=invitation.partner,
            username=username,
            email=invitation.email,
            password=password,
            role=invitation.role,
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_user = membership.user
        invitation.save(update_fields=["accepted_at", "accepted_user"])
    return membership


def invitation_revoke(*, invitation: Invitation, revoked_by: User) -> Invitation:
    _refuse_unless_allowed(revoked_by, invitation.partner)
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.state() != "pending":
            raise ValidationError(
                {"invitation": [f"only a pending invitation can be withdrawn; it is {invitation.state()}"]}
            )
        invitation.revoked_at = timezone.now()
        invitation.revoked_by = revoked_by
        invitation.save(update_fields=["revoked_at", "revoked_by"])
    return invitation


def partner_user_set_active(*, membership: PartnerUser, active: bool, changed_by: User) -> PartnerUser:
    """Deactivate (the login stops working at once, sessions included) or re-activate a partner's user.

    Deactivating withdraws the invitations that user issued and still pending. A partner admin
    cannot undo a deactivation made by the program's staff, nor leave its partner without an active
    admin; two admins deactivating each other at once cannot both succeed (both logins are locked
    and the actor must still be active).
    """
    _refuse_unless_allowed(changed_by, membership.partner)
    if membership.user_id == changed_by.pk:
        raise ValidationError({"user": ["You cannot deactivate or re-activate your own login."]})
    staff = can_write_all(changed_by)
    with transaction.atomic():
        users = {
            u.pk: u
            for u in get_user_model()
            .objects.select_for_update()
            .filter(pk__in=[membership.user_id, changed_by.pk])
            .order_by("pk")
        }
        membership = (
            PartnerUser.objects.select_for_update().select_related("user", "partner").get(pk=membership.pk)
        )
        user = membership.user
        if not users[changed_by.pk].is_active:
            raise PermissionDenied("Your own login has been deactivated.")
        if user.is_active == active:
            return membership
        if not staff:
            _refuse_partner_admin_change(membership, active=active)
        user.is_active = active
        user.save(update_fields=["is_active"])
        membership.access_changed_at = timezone.now()
        membership.access_changed_by = changed_by
        membership.save(update_fields=["access_changed_at", "access_changed_by"])
        if not active:
            _withdraw_invitations_by(user, partner=membership.partner, revoked_by=changed_by)
    return membership


def _refuse_partner_admin_change(membership: PartnerUser, *, active: bool) -> None:
    last_by = membership.access_changed_by
    if active and last_by is not None and can_write_all(last_by):
        raise ValidationError(
            {"user": ["The program team deactivated this login; ask your partner manager to re-activate it."]}
        )
    if not active and membership.is_admin:
        others = PartnerUser.objects.filter(
            partner_id=membership.partner_id, role=PartnerUser.Role.ADMIN, user__is_active=True
        ).exclude(pk=membership.pk)
        if not others.exists():
            raise ValidationError({"user": ["A partner keeps at least one active admin."]})


def _withdraw_invitations_by(user: User, *, partner: Partner, revoked_by: User) -> None:
    now = timezone.now()
    pending = Invitation.objects.select_for_update().filter(
        partner=partner,
        invited_by=user,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=now,
    )
    for invitation in pending.filter(expires_at__gt=now):  # one save each: the trail records each
        invitation.revoked_at, invitation.revoked_by = now, revoked_by
        invitation.save(update_fields=["revoked_at", "revoked_by"])
