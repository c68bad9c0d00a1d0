from collections.abc import Callable

from django.apps import AppConfig
from django.dispatch import Signal


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        """Listen to the domain's events. Deal registrations' changes arrive on the one domain event
        stream (events/, recorded by deals/services.py); applications and invitations, which that stream
        does not carry, are announced by the signals of partners/events.py. Either way the domain
        announces and notifications decide who hears about it, so the domain never imports this app,
        and each change is told once."""
        from events.services import register_consumer
        from notifications import partners
        from notifications.registrations import on_event
        from partners import events as partner_events

        register_consumer(on_event)
        receivers: list[tuple[Signal, Callable[..., None]]] = [
            (partner_events.application_received, partners.application_received),
            (partner_events.application_decided, partners.application_decided),
            (partner_events.invitation_issued, partners.invitation_issued),
        ]
        for signal, receiver in receivers:
            signal.connect(receiver, dispatch_uid=f"notifications.{receiver.__name__}")
