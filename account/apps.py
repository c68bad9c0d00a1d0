from django.apps import AppConfig


class AccountConfig(AppConfig):
    """Pages about the signed-in user's own account: login, password, notifications."""

    name = "account"
    verbose_name = "Your account"
