from django.apps import AppConfig


class ProgramConfig(AppConfig):
    """Program-wide settings and rules every other app may import: the settings row, the plausible
    range of dates and amounts."""

    name = "program"
    verbose_name = "Program"
