"""Who hears about a deal registration's change, and what they read: one function per event.

`on_event` reads the domain event stream (events/): deals/services.py records each change's event
in its transaction, and the notification is written in that same transaction (`notify` mails only
after it commits).
"""

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse

from deals.models import DealRegistration
from events.models import Event
from events.types import EventType
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


def registration_submitted(registration: DealRegistration) -> None:
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


def registration_approved(registration: DealRegistration) -> None:
    _notify_partner("registration_approved", registration)


def registration_rejected(registration: DealRegistration) -> None:
    _notify_partner("registration_rejected", registration)


def registration_expiring(registration: DealRegistration) -> None:
    _notify_partner("registration_expiring", registration)


def registration_expired(registration: DealRegistration) -> None:
    _notify_partner("registration_expired", registration)


HANDLERS: dict[str, Callable[[DealRegistration], None]] = {
    EventType.REGISTRATION_SUBMITTED: registration_submitted,
    EventType.REGISTRATION_APPROVED: registration_approved,
    EventType.REGISTRATION_REJECTED: registration_rejected,
    EventType.REGISTRATION_EXPIRING: registration_expiring,
    EventType.REGISTRATION_EXPIRED: registration_expired,
}


def on_event(event: Event) -> None:
    """The events consumer: notify about a registration's event, in the event's transaction."""
    handler = HANDLERS.get(event.type)
    if handler is None:
        return
    handler(DealRegistration.objects.select_related("partner__manager", "account").get(pk=event.object_id))
