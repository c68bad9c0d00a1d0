from django.apps import AppConfig


class KpisConfig(AppConfig):
    name = "kpis"
    verbose_name = "KPIs"

    def ready(self) -> None:
        # Runs are sent to their task by name (kpis.recovery.send_after_commit), which needs the task
        # in this process's registry: Celery's autodiscovery only runs in workers and beat.
        from kpis import tasks  # noqa: F401
