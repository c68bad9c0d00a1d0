from django.apps import AppConfig


class EconomicsConfig(AppConfig):
    name = "economics"
    verbose_name = "Partner economics"
