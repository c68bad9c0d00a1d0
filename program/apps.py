from django.apps import AppConfig


class ProgramConfig(AppConfig):
    """Program-wide settings and rules every other app may import: the settings row, the plausible
    range of dates and amounts."""

    name = "program"
    verbose_name = "Program"

    def ready(self) -> None:
        # Every database session gets its process's statement timeout (prm/database.py).
        from prm.database import connect_signals

        connect_signals()
