from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from events.services import register_consumer
        from notifications.registrations import on_event

        register_consumer(on_event)
