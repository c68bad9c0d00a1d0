from django.apps import AppConfig


class ProgramConfig(AppConfig):
    """Program-wide rules every other app may import: the plausible range of dates and amounts."""

    name = "program"
    verbose_name = "Program"
