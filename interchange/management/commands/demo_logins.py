"""`python manage.py demo_logins`: where to go and which demo logins exist."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from interchange.seeding import DEMO_PASSWORDS

DEMO_URL = "http://127.0.0.1:8000"
ROLES = {
    "manager": "partner manager",
    "salesops": "sales ops",
    "partner": "partner (portal)",
    "admin": "admin (superuser)",
}


class Command(BaseCommand):
    help = "Print the demo URL and the demo logins that exist in this database."

    def handle(self, *args, **options) -> None:
        existing = set(get_user_model().objects.filter(username__in=ROLES).values_list("username", flat=True))
        self.stdout.write(f"Open {DEMO_URL}")
        if not existing:
            self.stdout.write("No demo logins yet: run `python manage.py seed_demo`.")
            return
        for username, role in ROLES.items():
            if username in existing:
                self.stdout.write(f"  {role:<18} {username} / {DEMO_PASSWORDS[username]}")
