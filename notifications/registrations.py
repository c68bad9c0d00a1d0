"""Who hears about a deal registration's change, and what they read: one function per event.

Connected to the signals of deals/events.py in notifications/apps.py; deals/services.py sends them
inside the transaction that makes the change, and `notify` mails only after it commits.
"""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse

from deals.models import DealRegistration
from notifications.services import notify

User = get_user_model()


def _partner_users(registration: DealRegistration) -> list:
    """The active logins that act for the registration's partner."""
    return list(User.objects.filter(partner_membership__partner_id=registration.partner_id, is_active=True))


def _portal_link(registration: DealRegistration) -> str:
    return reverse("portal:registration_detail", kwargs={"registration_id": registration.pk})


def _notify_partner(kind: str, registration: DealRegistration) -> None:
    notify(
        kind=kind,
        users=_partner_users(registration),
        context={"registration": registration, "partner": registration.partner},
        link=_portal_link(registration),
    )


def registration_submitted(*, registration: DealRegistration, **_: Any) -> None:
    """To the partner's manager; to the program inbox when the partner has no (active) manager."""
    partner = registration.partner
    manager = partner.manager if partner.manager is not None and partner.manager.is_active else None
    inbox = settings.NOTIFICATIONS_PROGRAM_INBOX
    notify(
        kind="registration_submitted",
        users=[manager] if manager else (),
        emails=[inbox] if manager is None and inbox else (),
        context={"registration": registration, "partner": partner},
        link=f"{reverse('dashboards:registrations')}#reg-{registration.pk}-title",
    )


def registration_approved(*, registration: DealRegistration, **_: Any) -> None:
    _notify_partner("registration_approved", registration)


def registration_rejected(*, registration: DealRegistration, **_: Any) -> None:
    _notify_partner("registration_rejected", registration)


def registration_expiring(*, registration: DealRegistration, **_: Any) -> None:
    _notify_partner("registration_expiring", registration)


def registration_expired(*, registration: DealRegistration, **_: Any) -> None:
    _notify_partner("registration_expired", registration)
