"""`python manage.py expire_mdf [--today YYYY-MM-DD]`: expire approved MDF requests unclaimed past
their claim deadline (what the daily beat task does), and say how many."""

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mdf.services import requests_expire


class Command(BaseCommand):
    help = "Expire approved MDF requests whose claim deadline passed with no claim; their funds return."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--today", help="the day to expire as of (default: today in the program's time zone)"
        )

    def handle(self, *args: Any, today: str | None = None, **options: Any) -> None:
        try:
            day = date.fromisoformat(today) if today else None
        except ValueError:
            raise CommandError(f"--today {today!r} is not a date (YYYY-MM-DD)") from None
        expired = requests_expire(today=day)
        self.stdout.write(
            f"{expired} MDF request(s) expired; their unclaimed funds are back in their budgets."
        )
