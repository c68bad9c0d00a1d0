from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """Consumers of the domain event stream for other systems: signed webhooks (and the change
    feed the API serves from events.Change)."""

    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from events.services import register_consumer
        from integrations.services import deliveries_for_event

        register_consumer(deliveries_for_event)
