"""Who hears about an application or an invitation, and what they read: one receiver per event.

Connected to the signals of partners/events.py in notifications/apps.py; the partner services send
them inside the transaction that makes the change, and `notify` mails only after it commits.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import QuerySet

from notifications.services import absolute_url, notify
from partners.models import Application, Invitation
from partners.roles import StaffRole


def partner_managers() -> QuerySet[User]:
    """The active logins in the Partner managers group (they review applications)."""
    return get_user_model().objects.filter(groups__name=StaffRole.PARTNER_MANAGER.value, is_active=True)


def _application_context(application: Application) -> dict[str, Any]:
    partner = application.partner
    return {
        "application": application,
        "partner": partner,
        "company": partner.name,
        "contact_name": application.contact_name,
        "join_source": partner.join_source.name,
        "referred_by": partner.referred_by.name if partner.referred_by else "",
    }


def application_received(*, application: Application, contact_email: str, **_: Any) -> None:
    """To the applicant (fixed text: the address is not verified yet) and to the partner managers."""
    context = _application_context(application)
    notify(
        kind="application_received",
        emails=[contact_email],
        context={**context, "for_applicant": True},
    )
    notify(
        kind="application_received",
        users=partner_managers(),
        emails=[settings.NOTIFICATIONS_PROGRAM_INBOX] if settings.NOTIFICATIONS_PROGRAM_INBOX else [],
        context={**context, "for_applicant": False},
        link=f"/dashboard/applications/?status=applied#application-{application.pk}",
    )


def application_decided(*, application: Application, approved: bool, reason: str, **_: Any) -> None:
    """To the applicant: approved (an invitation follows) or rejected with the reason."""
    notify(
        kind="application_decided",
        emails=[application.contact_email],
        context={**_application_context(application), "approved": approved, "reason": reason},
    )


def _inviter_name(user: User) -> str:
    return (user.get_full_name() or "").strip() or user.get_username()


def invitation_issued(*, invitation: Invitation, path: str, invited_by: User, **_: Any) -> None:
    """To the invited address: the one-time link."""
    notify(
        kind="invitation",
        emails=[invitation.email],
        context={
            "invitation_url": absolute_url(path),
            "inviter": _inviter_name(invited_by),
            "partner": invitation.partner,
            "expires_at": invitation.expires_at,
            "role": invitation.get_role_display(),
            "invitation": invitation,
        },
    )
