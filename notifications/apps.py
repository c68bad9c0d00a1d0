from collections.abc import Callable

from django.apps import AppConfig
from django.dispatch import Signal


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        """Listen to the domain's events (partners/events.py, deals/events.py): the domain announces,
        notifications decide who hears about it, so the domain never imports this app."""
        from deals import events as deal_events
        from notifications import partners, registrations
        from partners import events as partner_events

        receivers: list[tuple[Signal, Callable[..., None]]] = [
            (partner_events.application_received, partners.application_received),
            (partner_events.application_decided, partners.application_decided),
            (partner_events.invitation_issued, partners.invitation_issued),
            (deal_events.registration_submitted, registrations.registration_submitted),
            (deal_events.registration_approved, registrations.registration_approved),
            (deal_events.registration_rejected, registrations.registration_rejected),
            (deal_events.registration_expiring, registrations.registration_expiring),
            (deal_events.registration_expired, registrations.registration_expired),
        ]
        for signal, receiver in receivers:
            signal.connect(receiver, dispatch_uid=f"notifications.{receiver.__name__}")
