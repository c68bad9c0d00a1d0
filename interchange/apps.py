from django.apps import AppConfig


class InterchangeConfig(AppConfig):
    name = "interchange"
    verbose_name = "Data interchange"

    def ready(self) -> None:
        # Import jobs are sent to their task by name (interchange.jobs), which needs the task in this
        # process's registry: Celery's autodiscovery only runs in workers and beat.
        from interchange import tasks  # noqa: F401
