from django.apps import AppConfig


class EconomicsConfig(AppConfig):
    name = "economics"
    verbose_name = "Partner economics"

    def ready(self) -> None:
        """Build the ledger rows of a deal won or lost, or a registration approved (after commit)."""
        from economics.triggers import on_event
        from events.services import register_consumer

        register_consumer(on_event)
