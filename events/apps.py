from django.apps import AppConfig


class EventsConfig(AppConfig):
    """The stream of domain events and the change log, at the bottom layer: every service records
    into it, consumers (integrations, notifications, audit) read from it."""

    name = "events"
    verbose_name = "Domain events"

    def ready(self) -> None:
        from events import changes

        changes.connect()
